//! An environments file's YAML into the model, every problem reported with its place: the
//! fields of each part, then the references between them (applications, `from`, dependencies).

use std::collections::{BTreeMap, BTreeSet};

use plus_core::AppCode;

use super::layers::ResolveError;
use super::model::{App, AppSettings, Constant, Environment, Environments};
use crate::decode::{Decoder, closest, join};
use crate::diagnostic::{Diagnostic, Rule};
use crate::source::Span;
use crate::yaml::{Node, Style, Value};

const TOP_FIELDS: &[&str] = &["version", "apps", "environments"];
const APP_FIELDS: &[&str] =
    &["app", "source", "buildType", "check", "port", "branch", "dependsOn", "config"];
const ENVIRONMENT_FIELDS: &[&str] = &["name", "from", "constants", "apps", "without"];
const SETTINGS_FIELDS: &[&str] = &["branch", "buildType", "check", "port", "constants"];
const SECRET_FIELDS: &[&str] = &["value", "secret"];

/// The branch built when neither the application nor an environment names one.
pub(crate) const DEFAULT_BRANCH: &str = "master";

/// Where the names an environments file defines and uses are, for the checks across parts.
#[derive(Default)]
struct Places {
    apps: BTreeMap<AppCode, Span>,
    dependencies: Vec<(AppCode, usize, AppCode, Span)>,
    environments: BTreeMap<String, Span>,
    from: BTreeMap<String, (String, Span)>,
    members: Vec<(String, AppCode, Span, &'static str)>,
}

/// Whether `name` may name an environment: what an [`AppCode`] allows.
fn valid_environment_name(name: &str) -> bool {
    AppCode::new(name).is_ok()
}

/// Whether `name` may name a constant: dotted identifiers (`mysql.host`, `log_level`).
pub(crate) fn valid_constant_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// The first pair of names where one is a prefix of the other at a dot (`db`, `db.host`): a
/// template could not hold both.
pub(crate) fn prefix_conflict<'a>(
    names: impl IntoIterator<Item = &'a String>,
) -> Option<(&'a String, &'a String)> {
    let sorted: BTreeSet<&String> = names.into_iter().collect();
    let sorted: Vec<&String> = sorted.into_iter().collect();
    sorted.windows(2).find_map(|pair| {
        pair[1]
            .strip_prefix(pair[0].as_str())
            .filter(|rest| rest.starts_with('.'))
            .map(|_| (pair[0], pair[1]))
    })
}

impl Decoder<'_> {
    pub(crate) fn environments(&mut self, root: &Node) -> Option<Environments> {
        let fields = self.fields(root, "", TOP_FIELDS)?;
        let version = self.version_field(&fields, "environments file");
        let mut places = Places::default();
        let apps = self.required(&fields, "apps").and_then(|node| self.apps(node, &mut places));
        let environments = match fields.get("environments") {
            Some(node) => self.environment_list(node, &mut places),
            None => Some(BTreeMap::new()),
        };
        self.check_references(&places);
        version?;
        let environments = Environments { apps: apps?, environments: environments? };
        if self.diagnostics.is_empty() {
            self.check_resolved(&environments, &places);
        }
        Some(environments)
    }

    /// What only the layers together show: a dependency left outside an environment, a
    /// circle of dependencies, a constant both a value and a group.
    fn check_resolved(&mut self, environments: &Environments, places: &Places) {
        for name in environments.environments.keys() {
            let Err(error) = environments.resolve(name) else { continue };
            let at_name = places.environments.get(name).copied().unwrap_or(Span::new(0, 0));
            let (rule, span, label, help) = match &error {
                ResolveError::DependencyOutsideEnvironment { app, dependency, .. } => {
                    let listed = places
                        .members
                        .iter()
                        .find(|(e, code, _, field)| e == name && code == app && *field == "apps");
                    (
                        Rule::DependencyOutsideEnvironment,
                        listed.map_or(at_name, |(_, _, span, _)| *span),
                        "its dependency is not here",
                        format!(
                            "add `{dependency}` to the environment's `apps`, or start it `from` one that has it"
                        ),
                    )
                }
                ResolveError::DependencyCycle { .. } => (
                    Rule::DependencyCycle,
                    at_name,
                    "no order brings these up",
                    "break the circle in the applications' `dependsOn`".to_owned(),
                ),
                ResolveError::ConstantConflict { short, .. } => (
                    Rule::InvalidName,
                    at_name,
                    "layers disagree",
                    format!("`{short}` is a value in one layer and a group in another; rename one"),
                ),
                // Reported where they are written, by the reference checks.
                _ => continue,
            };
            self.report(
                span,
                Diagnostic::error(rule, format!("environments.{name}"), error.to_string())
                    .label(label)
                    .help(help),
            );
        }
    }

    fn seq<'n>(&mut self, node: &'n Node, path: &str, expected: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.wrong_type(node, path, expected);
                None
            }
        }
    }

    fn apps(&mut self, node: &Node, places: &mut Places) -> Option<BTreeMap<AppCode, App>> {
        let items = self.seq(node, "apps", "a list of applications")?;
        let mut apps = BTreeMap::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let path = format!("apps[{i}]");
            let Some((app, span)) = self.app(item, &path, places) else {
                ok = false;
                continue;
            };
            if let Some(first) = places.apps.get(&app.code) {
                let first = self.describe_place(*first);
                self.report(
                    span,
                    Diagnostic::error(
                        Rule::DuplicateName,
                        join(&path, "app"),
                        format!("application `{}` is defined twice", app.code),
                    )
                    .label("second definition")
                    .help(format!("the first is at {first}; record each application once")),
                );
                ok = false;
                continue;
            }
            places.apps.insert(app.code.clone(), span);
            apps.insert(app.code.clone(), app);
        }
        ok.then_some(apps)
    }

    fn describe_place(&self, span: Span) -> String {
        let location = self.source().location(span.start);
        format!("line {}", location.line)
    }

    fn app(&mut self, node: &Node, path: &str, places: &mut Places) -> Option<(App, Span)> {
        let fields = self.fields(node, path, APP_FIELDS)?;
        let code_node = self.required(&fields, "app");
        let code = code_node.and_then(|n| self.app_code(n, &join(path, "app")));
        let source =
            self.required(&fields, "source").and_then(|n| self.text(n, &join(path, "source")));
        let build_type = self
            .required(&fields, "buildType")
            .and_then(|n| self.text(n, &join(path, "buildType")));
        let check =
            self.required(&fields, "check").and_then(|n| self.text(n, &join(path, "check")));
        let port = self.required(&fields, "port").and_then(|n| self.port(n, &join(path, "port")));
        let branch = match fields.get("branch") {
            Some(n) => self.text(n, &join(path, "branch")),
            None => Some(DEFAULT_BRANCH.to_owned()),
        };
        let (depends_on, spans) = self.app_codes(fields.get("dependsOn"), &join(path, "dependsOn"));
        let config = match fields.get("config") {
            Some(n) => self.string_list(n, &join(path, "config")),
            None => Some(Vec::new()),
        };
        let code = code?;
        let depends_on = depends_on?;
        for (index, (dependency, span)) in depends_on.iter().zip(&spans).enumerate() {
            if *dependency == code || depends_on[..index].contains(dependency) {
                let what =
                    if *dependency == code { "itself" } else { "the same application twice" };
                self.report(
                    *span,
                    Diagnostic::error(
                        Rule::InvalidDependency,
                        format!("{path}.dependsOn[{index}]"),
                        format!("`{code}` depends on {what}"),
                    )
                    .label("here"),
                );
                return None;
            }
            places.dependencies.push((code.clone(), index, dependency.clone(), *span));
        }
        let app = App {
            code,
            source: source?,
            build_type: build_type?,
            check: check?,
            port: port?,
            branch: branch?,
            depends_on,
            config: config?,
        };
        Some((app, code_node.map_or(fields.span, |n| n.span)))
    }

    /// A string that must not be blank.
    fn text(&mut self, node: &Node, path: &str) -> Option<String> {
        let text = self.string(node, path)?;
        if text.trim().is_empty() {
            self.report(
                node.span,
                Diagnostic::error(Rule::EmptyValue, path, format!("`{path}` is blank"))
                    .label("blank"),
            );
            return None;
        }
        Some(text)
    }

    fn port(&mut self, node: &Node, path: &str) -> Option<u16> {
        if let Value::Scalar { text, style: Style::Plain } = &node.value
            && let Ok(port) = text.parse::<u16>()
            && port > 0
        {
            return Some(port);
        }
        let shown = match &node.value {
            Value::Scalar { text, .. } => format!("`{text}`"),
            _ => node.describe(),
        };
        self.report(
            node.span,
            Diagnostic::error(Rule::InvalidPort, path, format!("`{path}` is {shown}, not a port"))
                .label("not a port")
                .help("a port is a whole number from 1 to 65535, unquoted"),
        );
        None
    }

    fn environment_list(
        &mut self,
        node: &Node,
        places: &mut Places,
    ) -> Option<BTreeMap<String, Environment>> {
        let items = self.seq(node, "environments", "a list of environments")?;
        let mut environments = BTreeMap::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let path = format!("environments[{i}]");
            let Some((environment, span)) = self.environment(item, &path, places) else {
                ok = false;
                continue;
            };
            if let Some(first) = places.environments.get(&environment.name) {
                let first = self.describe_place(*first);
                self.report(
                    span,
                    Diagnostic::error(
                        Rule::DuplicateName,
                        join(&path, "name"),
                        format!("environment `{}` is defined twice", environment.name),
                    )
                    .label("second definition")
                    .help(format!("the first is at {first}")),
                );
                ok = false;
                continue;
            }
            places.environments.insert(environment.name.clone(), span);
            environments.insert(environment.name.clone(), environment);
        }
        ok.then_some(environments)
    }

    fn environment(
        &mut self,
        node: &Node,
        path: &str,
        places: &mut Places,
    ) -> Option<(Environment, Span)> {
        let fields = self.fields(node, path, ENVIRONMENT_FIELDS)?;
        let name_node = self.required(&fields, "name");
        let name = name_node.and_then(|n| {
            let name = self.text(n, &join(path, "name"))?;
            if !valid_environment_name(&name) {
                self.report(
                    n.span,
                    Diagnostic::error(
                        Rule::InvalidName,
                        join(path, "name"),
                        format!("`{name}` cannot name an environment"),
                    )
                    .label("invalid name")
                    .help(
                        "use ASCII letters, digits, `.`, `_`, `-`, starting with a letter or digit",
                    ),
                );
                return None;
            }
            Some(name)
        });
        let from = fields.get("from").map(|n| (self.text(n, &join(path, "from")), n.span));
        let constants = match fields.get("constants") {
            Some(n) => self.constants(n, &join(path, "constants")),
            None => Some(BTreeMap::new()),
        };
        let (apps, apps_ok) = match fields.get("apps") {
            Some(n) => self.settings_map(n, &join(path, "apps")),
            None => (Vec::new(), true),
        };
        let (without, without_spans) =
            self.app_codes(fields.get("without"), &join(path, "without"));
        let name = name?;
        for (code, _, span) in &apps {
            places.members.push((name.clone(), code.clone(), *span, "apps"));
        }
        let from = match from {
            Some((text, span)) => {
                let text = text?;
                places.from.insert(name.clone(), (text.clone(), span));
                Some(text)
            }
            None => None,
        };
        let without = without?;
        for (code, span) in without.iter().zip(without_spans) {
            places.members.push((name.clone(), code.clone(), span, "without"));
        }
        if !apps_ok {
            return None;
        }
        let environment = Environment {
            name,
            from,
            constants: constants?,
            apps: apps.into_iter().map(|(code, settings, _)| (code, settings)).collect(),
            without,
        };
        Some((environment, name_node.map_or(fields.span, |n| n.span)))
    }

    fn constants(&mut self, node: &Node, path: &str) -> Option<BTreeMap<String, Constant>> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, path, "a mapping of constant names to values");
            return None;
        };
        let mut constants = BTreeMap::new();
        let mut ok = true;
        for (key, value) in entries {
            let Some(name) = self.string(key, path) else {
                ok = false;
                continue;
            };
            let constant_path = join(path, &name);
            if !valid_constant_name(&name) {
                self.report(
                    key.span,
                    Diagnostic::error(
                        Rule::InvalidName,
                        &constant_path,
                        format!("`{name}` cannot name a constant"),
                    )
                    .label("invalid name")
                    .help("dotted identifiers: letters, digits and `_`, parts joined by `.` (`mysql.host`)"),
                );
                ok = false;
                continue;
            }
            if constants.contains_key(&name) {
                self.report(
                    key.span,
                    Diagnostic::error(
                        Rule::DuplicateField,
                        &constant_path,
                        format!("constant `{name}` appears twice"),
                    )
                    .label("second occurrence"),
                );
                ok = false;
                continue;
            }
            match self.constant(value, &constant_path) {
                Some(constant) => {
                    constants.insert(name, constant);
                }
                None => ok = false,
            }
        }
        if let Some((short, long)) = prefix_conflict(constants.keys()) {
            self.report(
                node.span,
                Diagnostic::error(
                    Rule::InvalidName,
                    path,
                    format!("constants `{short}` and `{long}` cannot both exist"),
                )
                .label("in these constants")
                .help(format!("`{short}` would be a value and a group at once; rename one")),
            );
            ok = false;
        }
        ok.then_some(constants)
    }

    /// A constant: a scalar, or `{ value: ..., secret: true }`.
    fn constant(&mut self, node: &Node, path: &str) -> Option<Constant> {
        if let Value::Scalar { text, .. } = &node.value {
            return Some(Constant::plain(text.clone()));
        }
        let fields = self.fields(node, path, SECRET_FIELDS)?;
        let value =
            self.required(&fields, "value").and_then(|n| self.string(n, &join(path, "value")));
        let secret = match fields.get("secret") {
            Some(n) => match &n.value {
                Value::Scalar { text, style: Style::Plain }
                    if text == "true" || text == "false" =>
                {
                    Some(text == "true")
                }
                _ => {
                    self.wrong_type(n, &join(path, "secret"), "`true` or `false`");
                    None
                }
            },
            None => Some(false),
        };
        Some(Constant { value: value?, secret: secret? })
    }

    /// The applications of an environment with their settings: those that decoded, and
    /// whether all did.
    fn settings_map(
        &mut self,
        node: &Node,
        path: &str,
    ) -> (Vec<(AppCode, AppSettings, Span)>, bool) {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, path, "a mapping of application codes to settings");
            return (Vec::new(), false);
        };
        let mut all: Vec<(AppCode, AppSettings, Span)> = Vec::new();
        let mut ok = true;
        for (key, value) in entries {
            let Some(code) = self.app_code(key, path) else {
                ok = false;
                continue;
            };
            let app_path = join(path, code.as_str());
            if all.iter().any(|(c, ..)| *c == code) {
                self.report(
                    key.span,
                    Diagnostic::error(
                        Rule::DuplicateField,
                        &app_path,
                        format!("application `{code}` appears twice"),
                    )
                    .label("second occurrence"),
                );
                ok = false;
                continue;
            }
            let settings = if value.is_null() {
                Some(AppSettings::default())
            } else {
                self.settings(value, &app_path)
            };
            match settings {
                Some(settings) => all.push((code, settings, key.span)),
                None => ok = false,
            }
        }
        (all, ok)
    }

    fn settings(&mut self, node: &Node, path: &str) -> Option<AppSettings> {
        let fields = self.fields(node, path, SETTINGS_FIELDS)?;
        let mut ok = true;
        let mut text = |decoder: &mut Self, name: &str| match fields.get(name) {
            Some(n) => {
                let value = decoder.text(n, &join(path, name));
                ok &= value.is_some();
                value
            }
            None => None,
        };
        let branch = text(self, "branch");
        let build_type = text(self, "buildType");
        let check = text(self, "check");
        let port = match fields.get("port") {
            Some(n) => {
                let port = self.port(n, &join(path, "port"));
                ok &= port.is_some();
                port
            }
            None => None,
        };
        let constants = match fields.get("constants") {
            Some(n) => self.constants(n, &join(path, "constants")),
            None => Some(BTreeMap::new()),
        };
        let settings = AppSettings { branch, build_type, check, port, constants: constants? };
        ok.then_some(settings)
    }

    /// The references between parts: dependencies and environment members name applications
    /// of the registry, `from` names an environment, and `from` never comes back around.
    fn check_references(&mut self, places: &Places) {
        let app_names: Vec<&str> = places.apps.keys().map(AppCode::as_str).collect();
        let unknown_app =
            |decoder: &mut Self, code: &AppCode, span: Span, path: String, what: &str| {
                let mut diagnostic = Diagnostic::error(
                    Rule::UnknownApplication,
                    path,
                    format!("{what} `{code}`, which the file's `apps` do not define"),
                )
                .label("unknown application");
                diagnostic = match closest(code.as_str(), app_names.iter().copied()) {
                    Some(near) => diagnostic.help(format!("did you mean `{near}`?")),
                    None => diagnostic.help(
                        "record it once under `apps`, with its source, build type, check and port",
                    ),
                };
                decoder.report(span, diagnostic);
            };
        for (app, index, dependency, span) in &places.dependencies {
            if !places.apps.contains_key(dependency) {
                let path = format!("apps.{app}.dependsOn[{index}]");
                unknown_app(self, dependency, *span, path, &format!("`{app}` depends on"));
            }
        }
        for (environment, code, span, field) in &places.members {
            if !places.apps.contains_key(code) {
                let path = format!("environments.{environment}.{field}.{code}");
                unknown_app(self, code, *span, path, &format!("environment `{environment}` names"));
            }
        }
        let environment_names: Vec<&str> = places.environments.keys().map(String::as_str).collect();
        for (environment, (from, span)) in &places.from {
            if !places.environments.contains_key(from) {
                let mut diagnostic = Diagnostic::error(
                    Rule::UnknownEnvironment,
                    format!("environments.{environment}.from"),
                    format!(
                        "environment `{environment}` starts from `{from}`, which is not defined"
                    ),
                )
                .label("unknown environment");
                diagnostic = match closest(from, environment_names.iter().copied()) {
                    Some(near) => diagnostic.help(format!("did you mean `{near}`?")),
                    None => diagnostic.help(format!(
                        "defined environments: {}",
                        environment_names
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                };
                self.report(*span, diagnostic);
            }
        }
        // Each circle once, reported at the `from` of its first environment by name.
        let mut reported = BTreeSet::new();
        for start in places.from.keys() {
            let mut chain = vec![start.as_str()];
            let mut at = start.as_str();
            while let Some((next, _)) = places.from.get(at) {
                if let Some(position) = chain.iter().position(|c| *c == next) {
                    let circle: BTreeSet<&str> = chain[position..].iter().copied().collect();
                    let first = *circle.iter().next().unwrap_or(&next.as_str());
                    if reported.insert(first.to_owned()) {
                        let mut shown: Vec<&str> = chain[position..].to_vec();
                        shown.push(next);
                        let span = places.from.get(first).map_or(Span::new(0, 0), |(_, s)| *s);
                        self.report(
                            span,
                            Diagnostic::error(
                                Rule::FromCycle,
                                format!("environments.{first}.from"),
                                format!("environments start from one another in a circle: {}", shown.join(" -> ")),
                            )
                            .label("part of the circle")
                            .help("one of them must start from nothing, or from an environment outside the circle"),
                        );
                    }
                    break;
                }
                chain.push(next);
                at = next;
            }
        }
    }
}
