//! Turns the YAML tree into the typed model, reporting every problem it can find on the way.

use std::time::Duration;

use plus_core::{AppCode, Version};

use crate::diagnostic::{Diagnostic, Rule};
use crate::model::{
    AppEntry, Autodeploy, Build, BuildRun, Cache, Manifest, ManifestVersion, Target, Tools,
};
use crate::rules::{self, Problem};
use crate::source::{Source, Span};
use crate::yaml::{Node, Style, Value};

const TOP_FIELDS: &[&str] =
    &["version", "app", "dependsOn", "optionalDependsOn", "build", "autodeploy"];
const APP_LIST_FIELDS: &[&str] = &["apps"];
const APP_ENTRY_FIELDS: &[&str] = &["app", "dependsOn", "optionalDependsOn"];
const BUILD_FIELDS: &[&str] = &["os", "tools", "run", "target", "cache"];
const RUN_FIELDS: &[&str] = &["cmd"];
const TARGET_FIELDS: &[&str] = &["distDir", "files"];
const CACHE_FIELDS: &[&str] = &["dirs"];
const AUTODEPLOY_FIELDS: &[&str] =
    &["targetDir", "tools", "run", "check", "checkRetry", "checkInterval"];

pub(crate) struct Decoder<'s> {
    source: &'s Source,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

/// The known fields of one mapping, each with its value node.
pub(crate) struct Fields<'n> {
    pub(crate) path: String,
    pub(crate) span: Span,
    pub(crate) entries: Vec<(&'static str, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// The value of `name`; a null value counts as absent.
    pub(crate) fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).filter(|v| !v.is_null())
    }
}

pub(crate) fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_owned() } else { format!("{path}.{field}") }
}

/// The closest known field to an unknown one, if it is close enough to be a typo.
pub(crate) fn suggest(unknown: &str, known: &[&'static str]) -> Option<&'static str> {
    closest(unknown, known.iter().copied())
}

/// The name of `known` closest to `unknown`, if it is close enough to be a typo.
pub(crate) fn closest<'k>(
    unknown: &str,
    known: impl IntoIterator<Item = &'k str>,
) -> Option<&'k str> {
    let lower = unknown.to_ascii_lowercase();
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(&lower, &k.to_ascii_lowercase()), k))
        .filter(|(distance, k)| *distance <= (k.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

/// The text YAML's core schema gives a plain scalar that it reads as a number, printed back the
/// way a number prints; `None` when YAML reads it as a string.
fn as_yaml_number(text: &str) -> Option<String> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if let Some(hex) = unsigned.strip_prefix("0x") {
        return (!hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| {
            u128::from_str_radix(hex, 16)
                .map_or_else(|_| "<overflow>".to_owned(), |n| n.to_string())
        });
    }
    if let Some(oct) = unsigned.strip_prefix("0o") {
        return (!oct.is_empty() && oct.bytes().all(|b| (b'0'..=b'7').contains(&b))).then(|| {
            u128::from_str_radix(oct, 8).map_or_else(|_| "<overflow>".to_owned(), |n| n.to_string())
        });
    }
    if matches!(unsigned, ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN") {
        return Some(String::new());
    }
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        let sign =
            if text.starts_with('-') && unsigned.bytes().any(|b| b != b'0') { "-" } else { "" };
        let digits = unsigned.trim_start_matches('0');
        return Some(format!("{sign}{}", if digits.is_empty() { "0" } else { digits }));
    }
    // YAML 1.2 float: [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok =
        digits(int_part) && digits(frac_part) && !(int_part.is_empty() && frac_part.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    if !(mantissa_ok && exponent_ok) {
        return None;
    }
    text.parse::<f64>().ok().map(|f| f.to_string())
}

impl<'s> Decoder<'s> {
    pub(crate) fn new(source: &'s Source) -> Self {
        Self { source, diagnostics: Vec::new() }
    }

    pub(crate) fn source(&self) -> &Source {
        self.source
    }

    pub(crate) fn report(&mut self, span: Span, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic.at(self.source, span));
    }

    pub(crate) fn problem(&mut self, span: Span, path: &str, problem: Problem) {
        self.report(span, problem.into_diagnostic(path));
    }

    pub(crate) fn wrong_type(&mut self, node: &Node, path: &str, expected: &str) {
        let found = node.describe();
        self.report(
            node.span,
            Diagnostic::error(
                Rule::WrongType,
                path,
                format!("expected {expected} for `{path}`, found {found}"),
            )
            .label(format!("expected {expected}")),
        );
    }

    pub(crate) fn fields<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        known: &[&'static str],
    ) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, path, "a mapping");
            return None;
        };
        let mut fields = Fields { path: path.to_owned(), span: node.span, entries: Vec::new() };
        for (key, value) in entries {
            let Value::Scalar { text, .. } = &key.value else {
                self.wrong_type(key, path, "a field name");
                continue;
            };
            let Some(&name) = known.iter().find(|k| **k == text) else {
                let mut diagnostic = Diagnostic::error(
                    Rule::UnknownField,
                    join(path, text),
                    if path.is_empty() {
                        format!("unknown field `{text}`")
                    } else {
                        format!("unknown field `{text}` in `{path}`")
                    },
                )
                .label("unknown field");
                diagnostic = match suggest(text, known) {
                    Some(s) => diagnostic.help(format!("did you mean `{s}`?")),
                    None => diagnostic.help(format!(
                        "known fields here: {}",
                        known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                    )),
                };
                self.report(key.span, diagnostic);
                continue;
            };
            if fields.entries.iter().any(|(n, _)| *n == name) {
                self.report(
                    key.span,
                    Diagnostic::error(
                        Rule::DuplicateField,
                        join(path, name),
                        format!("field `{name}` appears twice"),
                    )
                    .label("second occurrence"),
                );
                continue;
            }
            fields.entries.push((name, value));
        }
        Some(fields)
    }

    pub(crate) fn required<'n>(&mut self, fields: &Fields<'n>, name: &str) -> Option<&'n Node> {
        let found = fields.get(name);
        if found.is_none() {
            let path = join(&fields.path, name);
            let whole = if fields.path.is_empty() {
                "the manifest".to_owned()
            } else {
                format!("`{}`", fields.path)
            };
            self.report(
                fields.span,
                Diagnostic::error(
                    Rule::MissingField,
                    &path,
                    format!("missing field `{name}` in {whole}"),
                )
                .label(format!("`{name}` is required here")),
            );
        }
        found
    }

    pub(crate) fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Scalar { text, .. } if !node.is_null() => Some(text.clone()),
            _ => {
                self.wrong_type(node, path, "a string");
                None
            }
        }
    }

    pub(crate) fn string_list(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        let Value::Seq(items) = &node.value else {
            self.wrong_type(node, path, "a list");
            if let Some(diagnostic) = self.diagnostics.last_mut()
                && matches!(node.value, Value::Scalar { .. })
            {
                diagnostic.help =
                    Some("write it as a list: put it on its own line after `- `".to_owned());
            }
            return None;
        };
        self.each(items, path, Self::string)
    }

    /// Decodes every item of a list (each reporting its own problems, so all are reported);
    /// `None` if any failed.
    pub(crate) fn each<T>(
        &mut self,
        items: &[Node],
        path: &str,
        mut decode: impl FnMut(&mut Self, &Node, &str) -> Option<T>,
    ) -> Option<Vec<T>> {
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match decode(self, item, &format!("{path}[{i}]")) {
                Some(value) => out.push(value),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn version(&mut self, node: &Node, path: &str, tool: &str) -> Option<Version> {
        let Value::Scalar { text, style } = &node.value else {
            self.wrong_type(node, path, "a version");
            return None;
        };
        if node.is_null() || text.is_empty() {
            self.report(
                node.span,
                Diagnostic::error(
                    Rule::InvalidToolVersion,
                    path,
                    format!("tool `{tool}` has no version"),
                )
                .label("no version")
                .help(format!("write the version after the colon: `{tool}: \"1.0\"`")),
            );
            return None;
        }
        if *style == Style::Plain {
            if matches!(text.as_str(), "true" | "false" | "True" | "False" | "TRUE" | "FALSE") {
                self.wrong_type(node, path, "a version");
                return None;
            }
            if let Some(number) = as_yaml_number(text)
                && number != *text
            {
                let what = if number.is_empty() {
                    "a special float".to_owned()
                } else {
                    format!("the number {number}")
                };
                self.report(
                    node.span,
                    Diagnostic::error(
                        Rule::UnquotedNumericVersion,
                        path,
                        format!("version `{text}` of tool `{tool}` is read by YAML as {what}"),
                    )
                    .label("unquoted number")
                    .help(format!("quote it to keep it as written: `{tool}: \"{text}\"`")),
                );
                return None;
            }
        }
        match Version::new(text.clone()) {
            Ok(v) => Some(v),
            Err(err) => {
                self.report(
                    node.span,
                    Diagnostic::error(Rule::InvalidToolVersion, path, err.to_string())
                        .label("invalid version"),
                );
                None
            }
        }
    }

    fn tools(&mut self, node: &Node, path: &str) -> Option<Tools> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, path, "a mapping of tool names to versions");
            return None;
        };
        let mut tools = Tools::new();
        let mut ok = true;
        for (key, value) in entries {
            let Value::Scalar { text: name, .. } = &key.value else {
                self.wrong_type(key, path, "a tool name");
                ok = false;
                continue;
            };
            let tool_path = join(path, name);
            if let Some(p) = rules::tool_name(name) {
                self.problem(key.span, &tool_path, p);
                ok = false;
                continue;
            }
            if tools.contains_key(name) {
                self.report(
                    key.span,
                    Diagnostic::error(
                        Rule::DuplicateField,
                        &tool_path,
                        format!("tool `{name}` appears twice"),
                    )
                    .label("second occurrence"),
                );
                ok = false;
                continue;
            }
            // An empty value's position is the next token's; the key is what a person can see.
            let shown = if value.is_null() {
                Node { span: key.span, ..value.clone() }
            } else {
                value.clone()
            };
            match self.version(&shown, &tool_path, name) {
                Some(v) => {
                    tools.insert(name.clone(), v);
                }
                None => ok = false,
            }
        }
        ok.then_some(tools)
    }

    pub(crate) fn app_code(&mut self, node: &Node, path: &str) -> Option<AppCode> {
        let text = self.string(node, path)?;
        match AppCode::new(text) {
            Ok(code) => Some(code),
            Err(err) => {
                self.report(
                    node.span,
                    Diagnostic::error(Rule::InvalidAppCode, path, err.to_string())
                        .label("invalid application code"),
                );
                None
            }
        }
    }

    pub(crate) fn app_codes(
        &mut self,
        node: Option<&Node>,
        path: &str,
    ) -> (Option<Vec<AppCode>>, Vec<Span>) {
        let Some(node) = node else { return (Some(Vec::new()), Vec::new()) };
        let Value::Seq(items) = &node.value else {
            self.wrong_type(node, path, "a list of application codes");
            return (None, Vec::new());
        };
        let codes = self.each(items, path, Self::app_code);
        (codes, items.iter().map(|n| n.span).collect())
    }

    /// A whole application list: `apps:` and one entry per application.
    pub(crate) fn app_list(&mut self, root: &Node) -> Option<Vec<AppEntry>> {
        let fields = self.fields(root, "", APP_LIST_FIELDS)?;
        let apps = self.required(&fields, "apps")?;
        let Value::Seq(items) = &apps.value else {
            self.wrong_type(apps, "apps", "a list of applications");
            return None;
        };
        self.each(items, "apps", Self::app_entry)
    }

    fn app_entry(&mut self, node: &Node, path: &str) -> Option<AppEntry> {
        let fields = self.fields(node, path, APP_ENTRY_FIELDS)?;
        let app = self.required(&fields, "app").map(|n| self.app_code(n, &join(path, "app")));
        let (depends_on, optional_depends_on) =
            self.dependencies(&fields, path, app.as_ref().and_then(Option::as_ref));
        Some(AppEntry {
            app: app??,
            depends_on: depends_on?,
            optional_depends_on: optional_depends_on?,
        })
    }

    /// `dependsOn` and `optionalDependsOn` of the mapping at `path`, checked against `app`.
    pub(crate) fn dependencies(
        &mut self,
        fields: &Fields<'_>,
        path: &str,
        app: Option<&AppCode>,
    ) -> (Option<Vec<AppCode>>, Option<Vec<AppCode>>) {
        let required_path = join(path, "dependsOn");
        let optional_path = join(path, "optionalDependsOn");
        let (depends_on, required_spans) = self.app_codes(fields.get("dependsOn"), &required_path);
        let (optional_depends_on, optional_spans) =
            self.app_codes(fields.get("optionalDependsOn"), &optional_path);
        if let (Some(required), Some(optional)) = (&depends_on, &optional_depends_on) {
            for (index, is_optional, p) in rules::dependencies(app, required, optional) {
                let (field, spans) = if is_optional {
                    (&optional_path, &optional_spans)
                } else {
                    (&required_path, &required_spans)
                };
                self.problem(spans[index], &format!("{field}[{index}]"), p);
            }
        }
        (depends_on, optional_depends_on)
    }

    /// The required `version` field of a document of `kind` (`manifest`, `environments
    /// file`): one of [`ManifestVersion::SUPPORTED`].
    pub(crate) fn version_field(
        &mut self,
        fields: &Fields<'_>,
        kind: &str,
    ) -> Option<ManifestVersion> {
        self.required(fields, "version").and_then(|node| {
            let text = self.string(node, "version")?;
            let parsed = ManifestVersion::parse(&text);
            if parsed.is_none() {
                self.report(
                    node.span,
                    Diagnostic::error(
                        Rule::UnsupportedVersion,
                        "version",
                        format!("unsupported {kind} version `{text}`"),
                    )
                    .label("unsupported version")
                    .help(format!("supported versions: {}", ManifestVersion::SUPPORTED.join(", "))),
                );
            }
            parsed
        })
    }

    pub(crate) fn manifest(&mut self, root: &Node) -> Option<Manifest> {
        let fields = self.fields(root, "", TOP_FIELDS)?;
        let version = self.version_field(&fields, "manifest");
        let app = fields.get("app").map(|n| self.app_code(n, "app"));
        let (depends_on, optional_depends_on) =
            self.dependencies(&fields, "", app.as_ref().and_then(Option::as_ref));
        let build = fields.get("build").map(|n| self.build(n));
        let autodeploy = fields.get("autodeploy").map(|n| self.autodeploy(n));
        Some(Manifest {
            version: version?,
            app: present(app)?,
            depends_on: depends_on?,
            optional_depends_on: optional_depends_on?,
            build: present(build)?,
            autodeploy: present(autodeploy)?,
        })
    }

    fn build(&mut self, node: &Node) -> Option<Build> {
        let path = "build";
        let fields = self.fields(node, path, BUILD_FIELDS)?;
        let os = fields.get("os").map(|n| self.string(n, "build.os"));
        let tools = fields.get("tools").map(|n| self.tools(n, "build.tools"));
        let run = self.required(&fields, "run").and_then(|n| self.run(n));
        let target = fields.get("target").map(|n| self.target(n));
        let cache = fields.get("cache").map(|n| self.cache(n));
        Some(Build {
            os: present(os)?,
            tools: present(tools)?.unwrap_or_default(),
            run: run?,
            target: present(target)?,
            cache: present(cache)?,
        })
    }

    fn run(&mut self, node: &Node) -> Option<BuildRun> {
        let fields = self.fields(node, "build.run", RUN_FIELDS)?;
        let cmd_node = self.required(&fields, "cmd")?;
        let cmd = self.string_list(cmd_node, "build.run.cmd")?;
        let mut ok = true;
        if let Some(p) = rules::command_list("build.run.cmd", &cmd) {
            self.problem(cmd_node.span, "build.run.cmd", p);
            ok = false;
        }
        if let Value::Seq(items) = &cmd_node.value {
            for (i, (text, item)) in cmd.iter().zip(items).enumerate() {
                let path = format!("build.run.cmd[{i}]");
                if let Some(p) = rules::non_blank(Rule::EmptyCommand, &path, text) {
                    self.problem(item.span, &path, p);
                    ok = false;
                }
            }
        }
        ok.then_some(BuildRun { cmd })
    }

    fn target(&mut self, node: &Node) -> Option<Target> {
        let fields = self.fields(node, "build.target", TARGET_FIELDS)?;
        let dist_dir = fields.get("distDir").map(|n| self.string(n, "build.target.distDir"));
        let files = fields.get("files").map(|n| self.string_list(n, "build.target.files"));
        Some(Target { dist_dir: present(dist_dir)?, files: present(files)?.unwrap_or_default() })
    }

    fn cache(&mut self, node: &Node) -> Option<Cache> {
        let fields = self.fields(node, "build.cache", CACHE_FIELDS)?;
        let dirs = fields.get("dirs").map(|n| self.string_list(n, "build.cache.dirs"));
        Some(Cache { dirs: present(dirs)?.unwrap_or_default() })
    }

    fn autodeploy(&mut self, node: &Node) -> Option<Autodeploy> {
        let fields = self.fields(node, "autodeploy", AUTODEPLOY_FIELDS)?;
        let target_dir = self.required(&fields, "targetDir").and_then(|n| {
            let dir = self.string(n, "autodeploy.targetDir")?;
            match rules::target_dir(&dir) {
                Some(p) => {
                    self.problem(n.span, "autodeploy.targetDir", p);
                    None
                }
                None => Some(dir),
            }
        });
        let tools = fields.get("tools").map(|n| self.tools(n, "autodeploy.tools"));
        let run = self.required(&fields, "run").and_then(|n| {
            let run = self.string(n, "autodeploy.run")?;
            match rules::non_blank(Rule::EmptyValue, "autodeploy.run", &run) {
                Some(p) => {
                    self.problem(n.span, "autodeploy.run", p);
                    None
                }
                None => Some(run),
            }
        });
        let check = fields.get("check").map(|n| self.string(n, "autodeploy.check"));
        let check_retry = fields.get("checkRetry").map(|n| self.retry(n));
        let check_interval = fields.get("checkInterval").map(|n| self.interval(n));
        Some(Autodeploy {
            target_dir: target_dir?,
            tools: present(tools)?.unwrap_or_default(),
            run: run?,
            check: present(check)?,
            check_retry: present(check_retry)?,
            check_interval: present(check_interval)?,
        })
    }

    fn retry(&mut self, node: &Node) -> Option<u32> {
        let path = "autodeploy.checkRetry";
        let Value::Scalar { text, style: Style::Plain } = &node.value else {
            self.wrong_type(node, path, "a whole number");
            return None;
        };
        let problem = match text.parse::<i64>() {
            Ok(n) if n < 0 => format!("`{path}` must not be negative, found {n}"),
            Ok(n) => match u32::try_from(n) {
                Ok(n) => return Some(n),
                Err(_) => format!("`{path}` is too large, found {n}"),
            },
            Err(_) => format!("`{path}` must be a whole number, found `{text}`"),
        };
        self.report(
            node.span,
            Diagnostic::error(Rule::InvalidRetry, path, problem)
                .label("invalid retry count")
                .help("retries count extra health checks after the first: 0, 1, 2, ..."),
        );
        None
    }

    fn interval(&mut self, node: &Node) -> Option<Duration> {
        let path = "autodeploy.checkInterval";
        let Value::Scalar { text, .. } = &node.value else {
            self.wrong_type(node, path, "a duration");
            return None;
        };
        if text.trim().parse::<f64>().is_ok() {
            self.report(
                node.span,
                Diagnostic::error(
                    Rule::IntervalWithoutUnit,
                    path,
                    format!("`{path}` has no unit: `{text}`"),
                )
                .label("no unit")
                .help(format!(
                    "write the unit, e.g. `{}s` for seconds or `{}ms` for milliseconds",
                    text.trim(),
                    text.trim()
                )),
            );
            return None;
        }
        match humantime::parse_duration(text) {
            Ok(d) => Some(d),
            Err(err) => {
                self.report(
                    node.span,
                    Diagnostic::error(
                        Rule::InvalidInterval,
                        path,
                        format!("`{path}` is not a duration: {err}"),
                    )
                    .label("not a duration")
                    .help("write a number with a unit: `30s`, `1m 30s`, `500ms`"),
                );
                None
            }
        }
    }
}

/// Folds "absent" (`None`), "present but invalid" (`Some(None)`, already reported) and "present
/// and valid" into `Some(value)` for absent-or-valid, `None` for invalid.
fn present<T>(field: Option<Option<T>>) -> Option<Option<T>> {
    match field {
        None => Some(None),
        Some(None) => None,
        Some(Some(value)) => Some(Some(value)),
    }
}
