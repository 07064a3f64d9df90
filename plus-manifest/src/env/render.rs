//! Configuration templates rendered for one environment: pure and deterministic, strict about
//! every name they use, and never showing a secret.
//!
//! A template sees four things: `env.name`; `app` (`code`, `branch`, `build_type`, `port`,
//! `check`, and `host` once the facts know where the application itself goes: then `port` is
//! that address's too, so a program listens where its dependents are told it does); `const`, the constants of the environment and the application by their dotted
//! names (`{{ const.mysql.host }}`); and `deps`, the address of each application this one
//! depends on in the same environment (`{{ deps.mysql.host }}`, `.port`, `.url`; write
//! `deps["user-service"]` for a code with `-`). Only declared dependencies are there: a
//! template cannot quietly reach an application its `dependsOn` does not name.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::value::Value;
use plus_core::AppCode;

use super::layers::{Layered, Resolved, ResolvedApp};
use super::model::SECRET_MASK;
use crate::decode::closest;
use crate::diagnostic::{Diagnostic, Report, Rule};
use crate::source::{Source, Span};

/// Most template instructions one file may run: a template is configuration, and a loop that
/// would run longer is an error, not a hang.
const MAX_FUEL: u64 = 1_000_000;

/// Where an application of an environment answers: what its dependents' templates see.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Address {
    /// Its host name or IP address.
    pub host: String,
    /// Its port.
    pub port: u16,
}

/// What the platform knows of an environment's applications while it brings it up: each
/// one's address, learned as it is deployed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Facts {
    addresses: BTreeMap<AppCode, (Address, String)>,
}

impl Facts {
    /// No address known yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The addresses a platform that names hosts after the application and the environment
    /// (the talk's DNS binding: `user-service.dev-alice.<domain>`) will give, each on its
    /// resolved port: for rendering before anything is deployed.
    #[must_use]
    pub fn planned(environment: &Resolved, domain: &str) -> Self {
        let mut facts = Self::new();
        for app in environment.apps.values() {
            let host = format!("{}.{}.{domain}", app.code, environment.name);
            let address = Address { host, port: app.port.value };
            let how =
                format!("address of {} in environment {}, as planned", app.code, environment.name);
            facts.addresses.insert(app.code.clone(), (address, how));
        }
        facts
    }

    /// Records where `app` was deployed.
    pub fn deployed(&mut self, environment: &str, app: AppCode, address: Address) {
        let how = format!("address of {app} in environment {environment}, as deployed");
        self.addresses.insert(app, (address, how));
    }

    /// Where `app` answers, if known.
    #[must_use]
    pub fn address(&self, app: &AppCode) -> Option<&Address> {
        self.addresses.get(app).map(|(address, _)| address)
    }
}

/// Template texts by path (as an application's `config` names them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Templates {
    files: BTreeMap<String, String>,
}

impl Templates {
    /// No templates.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the template at `path`.
    pub fn insert(&mut self, path: impl Into<String>, text: impl Into<String>) {
        self.files.insert(path.into(), text.into());
    }

    /// Reads every template the applications of `environments` name, relative to `base`.
    ///
    /// # Errors
    /// The path and the I/O error of the first file that cannot be read.
    pub fn load(
        base: &std::path::Path,
        environments: &super::Environments,
    ) -> Result<Self, (String, std::io::Error)> {
        let mut templates = Self::new();
        for path in environments.apps.values().flat_map(|a| &a.config) {
            if templates.files.contains_key(path) {
                continue;
            }
            let text = std::fs::read_to_string(base.join(path)).map_err(|e| (path.clone(), e))?;
            templates.insert(path.clone(), text);
        }
        Ok(templates)
    }

    /// The template at `path`.
    #[must_use]
    pub fn get(&self, path: &str) -> Option<&str> {
        self.files.get(path).map(String::as_str)
    }
}

/// One name a template used, what it was, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reference {
    /// The name as written (`const.mysql.host`, `deps.mysql`, `app.branch`).
    pub name: String,
    /// Its value as it may be shown (a secret's masked).
    pub shown: String,
    /// Where it came from (`environment dev-alice, from beta, constant mysql.host`).
    pub origin: String,
    /// Whether it is a secret.
    pub secret: bool,
}

/// One configuration file rendered for an application of an environment.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Its path, as the application's `config` names it.
    pub path: String,
    text: String,
    /// The text with every secret masked: what logs, reports and diffs may show.
    pub shown: String,
    /// The names it used, sorted.
    pub references: Vec<Reference>,
}

impl RenderedFile {
    /// The text with its secrets: to be written where the application reads it, and nowhere
    /// else.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Debug for RenderedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderedFile")
            .field("path", &self.path)
            .field("shown", &self.shown)
            .field("references", &self.references)
            .finish_non_exhaustive()
    }
}

/// Every configuration file of an environment's applications, rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The environment.
    pub environment: Resolved,
    /// Each application's files, in its `config` order.
    pub files: BTreeMap<AppCode, Vec<RenderedFile>>,
}

impl Rendered {
    /// How many files were rendered.
    #[must_use]
    pub fn file_count(&self) -> usize {
        self.files.values().map(Vec::len).sum()
    }
}

/// Why an environment's templates could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// An application names a template that was not loaded.
    #[error("`{app}` names the configuration template `{path}`, which was not loaded")]
    MissingTemplate {
        /// The application.
        app: AppCode,
        /// The template's path.
        path: String,
    },
    /// Templates hold errors: one report per file, each problem with its line and column.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Report>),
}

impl Resolved {
    /// Renders every configuration file of every application, with `facts` for the
    /// dependencies' addresses. Every template is rendered and every problem reported.
    ///
    /// # Errors
    /// [`RenderError`]; no file of a failed rendering is returned.
    pub fn render(&self, templates: &Templates, facts: &Facts) -> Result<Rendered, RenderError> {
        let mut files = BTreeMap::new();
        let mut reports = Vec::new();
        for app in self.apps.values() {
            match self.render_app(app, templates, facts) {
                Ok(rendered) => {
                    files.insert(app.code.clone(), rendered);
                }
                Err(RenderError::Invalid(mut more)) => reports.append(&mut more),
                Err(other) => return Err(other),
            }
        }
        if !reports.is_empty() {
            return Err(RenderError::Invalid(reports));
        }
        Ok(Rendered { environment: self.clone(), files })
    }

    /// Renders the configuration files of one application.
    ///
    /// # Errors
    /// As [`Resolved::render`].
    pub fn render_app(
        &self,
        app: &ResolvedApp,
        templates: &Templates,
        facts: &Facts,
    ) -> Result<Vec<RenderedFile>, RenderError> {
        let context = Context::of(self, app, facts);
        let mut files = Vec::new();
        let mut reports = Vec::new();
        for path in &app.config {
            let text = templates.get(path).ok_or_else(|| RenderError::MissingTemplate {
                app: app.code.clone(),
                path: path.clone(),
            })?;
            match context.render(path, text) {
                Ok(file) => files.push(file),
                Err(report) => reports.push(report),
            }
        }
        if reports.is_empty() { Ok(files) } else { Err(RenderError::Invalid(reports)) }
    }
}

/// What one application's templates see, with secrets and without.
struct Context<'a> {
    app: &'a ResolvedApp,
    real: Value,
    masked: Value,
    /// Every name a template may use, with its shown value and origin.
    known: BTreeMap<String, (String, String, bool)>,
}

impl<'a> Context<'a> {
    fn of(environment: &'a Resolved, app: &'a ResolvedApp, facts: &'a Facts) -> Self {
        let mut known = BTreeMap::new();
        let setting = |known: &mut BTreeMap<String, (String, String, bool)>,
                       name: &str,
                       value: String,
                       origin: String| {
            known.insert(format!("app.{name}"), (value, origin, false));
        };
        setting(&mut known, "code", app.code.to_string(), "the application's code".to_owned());
        setting(&mut known, "branch", app.branch.value.clone(), app.branch.origin.to_string());
        setting(
            &mut known,
            "build_type",
            app.build_type.value.clone(),
            app.build_type.origin.to_string(),
        );
        // Where the application itself goes, once known, wins over the port it was given:
        // its dependents are rendered with that address.
        let own = facts.addresses.get(&app.code);
        let port = own.map_or(app.port.value, |(address, _)| address.port);
        match own {
            Some((address, how)) => {
                setting(&mut known, "port", port.to_string(), how.clone());
                setting(&mut known, "host", address.host.clone(), how.clone());
            }
            None => setting(&mut known, "port", port.to_string(), app.port.origin.to_string()),
        }
        setting(&mut known, "check", app.check.value.clone(), app.check.origin.to_string());
        known.insert(
            "env.name".to_owned(),
            (environment.name.clone(), "the environment's name".to_owned(), false),
        );
        for (name, Layered { value, origin }) in &app.constants {
            known.insert(
                format!("const.{name}"),
                (value.shown().to_owned(), origin.to_string(), value.secret),
            );
        }
        let mut deps = BTreeMap::new();
        for dependency in &app.depends_on {
            if let Some((address, how)) = facts.addresses.get(dependency) {
                let url = format!("http://{}:{}", address.host, address.port);
                for (field, value) in [
                    ("host", address.host.clone()),
                    ("port", address.port.to_string()),
                    ("url", url.clone()),
                ] {
                    known.insert(format!("deps.{dependency}.{field}"), (value, how.clone(), false));
                }
                deps.insert(
                    dependency.to_string(),
                    Value::from_serialize(BTreeMap::from([
                        ("host", Value::from(address.host.clone())),
                        ("port", Value::from(address.port)),
                        ("url", Value::from(url)),
                    ])),
                );
            }
        }
        let values = |masked: bool| {
            let constants = nest(app.constants.iter().map(|(name, Layered { value, .. })| {
                let shown = if masked && value.secret { SECRET_MASK } else { value.value.as_str() };
                (name.as_str(), shown)
            }));
            Value::from_serialize(BTreeMap::from([
                (
                    "env",
                    Value::from_serialize(BTreeMap::from([("name", environment.name.clone())])),
                ),
                (
                    "app",
                    Value::from_serialize(
                        [
                            ("code", Value::from(app.code.to_string())),
                            ("branch", Value::from(app.branch.value.clone())),
                            ("build_type", Value::from(app.build_type.value.clone())),
                            ("port", Value::from(port)),
                            ("check", Value::from(app.check.value.clone())),
                        ]
                        .into_iter()
                        .chain(own.map(|(address, _)| ("host", Value::from(address.host.clone()))))
                        .collect::<BTreeMap<_, _>>(),
                    ),
                ),
                ("const", constants),
                ("deps", Value::from_serialize(&deps)),
            ]))
        };
        Self { app, real: values(false), masked: values(true), known }
    }

    fn render(&self, path: &str, text: &str) -> Result<RenderedFile, Report> {
        let mut engine = minijinja::Environment::new();
        engine.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        engine.set_debug(true);
        engine.set_fuel(Some(MAX_FUEL));
        // Configuration is not HTML: values go in as they are.
        engine.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        engine.set_keep_trailing_newline(true);
        let source = Source::new(path, text);
        let template = engine.template_from_str(text).map_err(|e| self.report(&source, &e))?;
        let rendered = template.render(&self.real).map_err(|e| self.report(&source, &e))?;
        let shown = template.render(&self.masked).map_err(|e| self.report(&source, &e))?;
        let mut names: BTreeSet<String> = template.undeclared_variables(true).into_iter().collect();
        // `deps["user-service"]` shows as `deps`: name each dependency it may have meant.
        if names.remove("deps") {
            let named = |d: &AppCode| names.iter().any(|n| n.starts_with(&format!("deps.{d}.")));
            let unnamed: Vec<String> = self
                .app
                .depends_on
                .iter()
                .filter(|d| !named(d))
                .map(|d| format!("deps.{d}"))
                .collect();
            names.extend(unnamed);
        }
        let references = names.into_iter().filter_map(|name| self.reference(name)).collect();
        Ok(RenderedFile { path: path.to_owned(), text: rendered, shown, references })
    }

    /// What `name` was: one known name, or a group of them (`deps.mysql`, `const.mysql`).
    fn reference(&self, name: String) -> Option<Reference> {
        if let Some((shown, origin, secret)) = self.known.get(&name) {
            return Some(Reference {
                name,
                shown: shown.clone(),
                origin: origin.clone(),
                secret: *secret,
            });
        }
        let prefix = format!("{name}.");
        let members: Vec<(&String, &(String, String, bool))> = self
            .known
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .collect();
        let (_, (_, origin, _)) = members.first()?;
        let secret = members.iter().any(|(_, (_, _, s))| *s);
        let shown = members
            .iter()
            .map(|(k, (v, ..))| format!("{}={v}", &k[prefix.len()..]))
            .collect::<Vec<_>>()
            .join(", ");
        Some(Reference { name, shown, origin: origin.clone(), secret })
    }

    fn report(&self, source: &Source, error: &minijinja::Error) -> Report {
        let text = source.text();
        let mut span = error.range().map_or(Span::new(0, 0), |r| Span::new(r.start, r.end));
        // An attribute's span starts at its dot: reach back to the name it hangs from.
        let name_char =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']' | '"' | '\'');
        let undefined = error.kind() == minijinja::ErrorKind::UndefinedError;
        while let Some(c) =
            text.get(..span.start).and_then(|t| t.chars().next_back()).filter(|_| undefined)
        {
            if !name_char(c) {
                break;
            }
            span.start -= c.len_utf8();
        }
        let written = text.get(span.start..span.end).unwrap_or("").trim().to_owned();
        let diagnostic = match error.kind() {
            minijinja::ErrorKind::UndefinedError => {
                let mut diagnostic = Diagnostic::error(
                    Rule::UnknownReference,
                    "",
                    format!("`{written}` names nothing this template can see"),
                )
                .label("unknown name");
                let near = closest(&written, self.known.keys().map(String::as_str));
                diagnostic = match near {
                    Some(near) => diagnostic.help(format!("did you mean `{near}`?")),
                    None if written.starts_with("deps") => diagnostic.help(format!(
                        "`deps` holds the applications `{}` depends on whose address is known: {}",
                        self.app.code,
                        self.app.depends_on.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", ")
                    )),
                    None => diagnostic.help(
                        "define it as a constant of the environment or of the application, or name a field of `app`, `env` or `deps`",
                    ),
                };
                diagnostic
            }
            minijinja::ErrorKind::SyntaxError => Diagnostic::error(
                Rule::TemplateSyntax,
                "",
                format!("invalid template: {}", error.detail().unwrap_or("syntax error")),
            )
            .label("here"),
            _ => Diagnostic::error(
                Rule::TemplateSyntax,
                "",
                format!("the template cannot be rendered: {}", error.detail().unwrap_or("error")),
            )
            .label("here"),
        };
        Report::new(source.clone(), vec![diagnostic.at(source, span)])
    }
}

/// Dotted names and their values as nested maps: `mysql.host` as `{mysql: {host: ..}}`.
fn nest<'v>(entries: impl Iterator<Item = (&'v str, &'v str)>) -> Value {
    #[derive(Default)]
    struct Tree<'v> {
        value: Option<&'v str>,
        children: BTreeMap<&'v str, Tree<'v>>,
    }
    fn to_value(tree: &Tree<'_>) -> Value {
        match tree.value {
            Some(v) => Value::from(v),
            None => Value::from_iter(tree.children.iter().map(|(k, t)| (*k, to_value(t)))),
        }
    }
    let mut root = Tree::default();
    for (name, value) in entries {
        let mut at = &mut root;
        for part in name.split('.') {
            at = at.children.entry(part).or_default();
        }
        at.value = Some(value);
    }
    to_value(&root)
}
