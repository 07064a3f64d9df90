//! The semantic rules, shared by the decoder (which knows spans) and [`Manifest::validate`]
//! (which checks manifests built in code).

use plus_core::AppCode;

use crate::diagnostic::{Diagnostic, Rule};
use crate::model::{Manifest, Tools};

/// A broken rule, before it is given a place.
pub(crate) struct Problem {
    pub(crate) rule: Rule,
    pub(crate) message: String,
    pub(crate) label: &'static str,
    pub(crate) help: Option<String>,
}

impl Problem {
    fn new(rule: Rule, message: String, label: &'static str) -> Self {
        Self { rule, message, label, help: None }
    }

    fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub(crate) fn into_diagnostic(self, path: &str) -> Diagnostic {
        let diagnostic = Diagnostic::error(self.rule, path, self.message).label(self.label);
        match self.help {
            Some(help) => diagnostic.help(help),
            None => diagnostic,
        }
    }
}

pub(crate) fn command_list(path: &str, cmds: &[String]) -> Option<Problem> {
    cmds.is_empty().then(|| {
        Problem::new(Rule::EmptyCommand, format!("`{path}` has no commands"), "empty list")
            .help("list at least one command, e.g. `- mvn package`")
    })
}

pub(crate) fn non_blank(rule: Rule, path: &str, text: &str) -> Option<Problem> {
    text.trim().is_empty().then(|| Problem::new(rule, format!("`{path}` is blank"), "blank"))
}

pub(crate) fn target_dir(dir: &str) -> Option<Problem> {
    (!dir.starts_with('/')).then(|| {
        Problem::new(
            Rule::RelativeTargetDir,
            format!("`autodeploy.targetDir` must be an absolute path, found `{dir}`"),
            "not absolute",
        )
        .help(format!("write it from the root, e.g. `/{}`", dir.trim_start_matches("./")))
    })
}

pub(crate) fn tool_name(name: &str) -> Option<Problem> {
    name.trim().is_empty().then(|| {
        Problem::new(Rule::EmptyToolName, "a tool has an empty name".to_owned(), "empty tool name")
    })
}

/// Self-dependencies, duplicates, and codes listed as both required and optional.
pub(crate) fn dependencies(
    app: Option<&AppCode>,
    required: &[AppCode],
    optional: &[AppCode],
) -> Vec<(usize, bool, Problem)> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (index, (is_optional, code)) in
        required.iter().map(|c| (false, c)).chain(optional.iter().map(|c| (true, c))).enumerate()
    {
        let local = if is_optional { index - required.len() } else { index };
        if app == Some(code) {
            problems.push((
                local,
                is_optional,
                Problem::new(
                    Rule::InvalidDependency,
                    format!("application `{code}` depends on itself"),
                    "self-dependency",
                ),
            ));
        } else if !seen.insert(code) {
            problems.push((
                local,
                is_optional,
                Problem::new(
                    Rule::InvalidDependency,
                    format!("dependency `{code}` is listed more than once"),
                    "listed again",
                )
                .help("list each dependency once, in `dependsOn` or in `optionalDependsOn`"),
            ));
        }
    }
    problems
}

fn tools(path: &str, tools: &Tools, out: &mut Vec<Diagnostic>) {
    for name in tools.keys() {
        if let Some(p) = tool_name(name) {
            out.push(p.into_diagnostic(path));
        }
    }
}

impl Manifest {
    /// Checks the rules that a manifest built in code could break (one parsed from YAML has
    /// already been checked). The diagnostics carry field paths but no spans.
    ///
    /// # Errors
    /// Every broken rule, in field order.
    pub fn validate(&self) -> Result<(), Vec<Diagnostic>> {
        let mut out = Vec::new();
        for (index, optional, p) in
            dependencies(self.app.as_ref(), &self.depends_on, &self.optional_depends_on)
        {
            let field = if optional { "optionalDependsOn" } else { "dependsOn" };
            out.push(p.into_diagnostic(&format!("{field}[{index}]")));
        }
        if let Some(build) = &self.build {
            tools("build.tools", &build.tools, &mut out);
            if let Some(p) = command_list("build.run.cmd", &build.run.cmd) {
                out.push(p.into_diagnostic("build.run.cmd"));
            }
            for (i, cmd) in build.run.cmd.iter().enumerate() {
                let path = format!("build.run.cmd[{i}]");
                if let Some(p) = non_blank(Rule::EmptyCommand, &path, cmd) {
                    out.push(p.into_diagnostic(&path));
                }
            }
        }
        if let Some(deploy) = &self.autodeploy {
            if let Some(p) = target_dir(&deploy.target_dir) {
                out.push(p.into_diagnostic("autodeploy.targetDir"));
            }
            tools("autodeploy.tools", &deploy.tools, &mut out);
            if let Some(p) = non_blank(Rule::EmptyValue, "autodeploy.run", &deploy.run) {
                out.push(p.into_diagnostic("autodeploy.run"));
            }
        }
        if out.is_empty() { Ok(()) } else { Err(out) }
    }
}
