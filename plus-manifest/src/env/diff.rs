//! Two environments side by side: which applications each has, where their settings and
//! constants differ, and their rendered configuration line by line, secrets never shown.

use std::collections::BTreeSet;
use std::fmt;

use plus_core::AppCode;

use super::layers::ResolvedApp;
use super::model::{Constant, SECRET_MASK};
use super::render::Rendered;

/// One value that differs between the two environments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What (`branch`, `constant log_level`).
    pub what: String,
    /// On the left, as it may be shown (`None`: absent there).
    pub left: Option<String>,
    /// On the right, as it may be shown.
    pub right: Option<String>,
}

/// How one application differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppDiff {
    /// The application.
    pub app: AppCode,
    /// Settings and constants that differ (a secret's values shown masked, named all the same).
    pub changes: Vec<Change>,
    /// Per configuration file that differs: a unified diff of the shown texts.
    pub files: Vec<(String, String)>,
}

/// How two rendered environments differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvDiff {
    /// The left environment.
    pub left: String,
    /// The right one.
    pub right: String,
    /// The environments' constants that differ.
    pub constants: Vec<Change>,
    /// Applications only the left has.
    pub only_left: Vec<AppCode>,
    /// Applications only the right has.
    pub only_right: Vec<AppCode>,
    /// Applications both have that differ.
    pub apps: Vec<AppDiff>,
}

impl EnvDiff {
    /// Whether the two are the same.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.constants.is_empty()
            && self.only_left.is_empty()
            && self.only_right.is_empty()
            && self.apps.is_empty()
    }
}

impl Rendered {
    /// How `self` (left) and `other` (right) differ.
    #[must_use]
    pub fn diff(&self, other: &Rendered) -> EnvDiff {
        let (left, right) = (&self.environment, &other.environment);
        let keys = |apps: &std::collections::BTreeMap<AppCode, ResolvedApp>| -> BTreeSet<AppCode> {
            apps.keys().cloned().collect()
        };
        let (l, r) = (keys(&left.apps), keys(&right.apps));
        let mut apps = Vec::new();
        for code in l.intersection(&r) {
            let (a, b) = (&left.apps[code], &right.apps[code]);
            let mut changes = Vec::new();
            let mut compare = |what: &str, x: String, y: String| {
                if x != y {
                    changes.push(Change { what: what.to_owned(), left: Some(x), right: Some(y) });
                }
            };
            compare("branch", a.branch.value.clone(), b.branch.value.clone());
            compare("buildType", a.build_type.value.clone(), b.build_type.value.clone());
            compare("check", a.check.value.clone(), b.check.value.clone());
            compare("port", a.port.value.to_string(), b.port.value.to_string());
            // Constants of this application only: the environments' own are listed once.
            let names: BTreeSet<&String> = a.constants.keys().chain(b.constants.keys()).collect();
            for name in names {
                let (x, y) = (a.constants.get(name), b.constants.get(name));
                let own = x.map(|c| &c.value) != left.constants.get(name).map(|c| &c.value)
                    || y.map(|c| &c.value) != right.constants.get(name).map(|c| &c.value);
                if own && x.map(|c| &c.value) != y.map(|c| &c.value) {
                    changes.push(constant_change(name, x.map(|c| &c.value), y.map(|c| &c.value)));
                }
            }
            let mut files = Vec::new();
            let no_files = Vec::new();
            let (fa, fb) = (
                self.files.get(code).unwrap_or(&no_files),
                other.files.get(code).unwrap_or(&no_files),
            );
            let paths: BTreeSet<&String> = fa.iter().chain(fb).map(|f| &f.path).collect();
            for path in paths {
                let text = |files: &[super::render::RenderedFile]| {
                    files
                        .iter()
                        .find(|f| f.path == *path)
                        .map_or(String::new(), |f| f.shown.clone())
                };
                let (ta, tb) = (text(fa), text(fb));
                if ta != tb {
                    let unified = similar::TextDiff::from_lines(&ta, &tb)
                        .unified_diff()
                        .context_radius(1)
                        .header(&format!("{}/{path}", left.name), &format!("{}/{path}", right.name))
                        .to_string();
                    files.push((path.clone(), unified));
                }
            }
            if !changes.is_empty() || !files.is_empty() {
                apps.push(AppDiff { app: code.clone(), changes, files });
            }
        }
        let names: BTreeSet<&String> =
            left.constants.keys().chain(right.constants.keys()).collect();
        let constants = names
            .into_iter()
            .filter_map(|name| {
                let (x, y) = (left.constants.get(name), right.constants.get(name));
                let (x, y) = (x.map(|c| &c.value), y.map(|c| &c.value));
                (x != y).then(|| constant_change(name, x, y))
            })
            .collect();
        EnvDiff {
            left: left.name.clone(),
            constants,
            right: right.name.clone(),
            only_left: l.difference(&r).cloned().collect(),
            only_right: r.difference(&l).cloned().collect(),
            apps,
        }
    }
}

/// A constant that differs; a secret's values masked (a secret on either side masks both).
fn constant_change(name: &str, left: Option<&Constant>, right: Option<&Constant>) -> Change {
    let secret = left.is_some_and(|c| c.secret) || right.is_some_and(|c| c.secret);
    let shown = |c: Option<&Constant>| {
        c.map(|c| if secret { SECRET_MASK } else { c.value.as_str() }.to_owned())
    };
    Change { what: format!("constant {name}"), left: shown(left), right: shown(right) }
}

impl fmt::Display for EnvDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "{} and {} are the same", self.left, self.right);
        }
        let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".to_owned());
        for change in &self.constants {
            writeln!(f, "{}: {} -> {}", change.what, shown(&change.left), shown(&change.right))?;
        }
        for app in &self.only_left {
            writeln!(f, "- {app}: only in {}", self.left)?;
        }
        for app in &self.only_right {
            writeln!(f, "+ {app}: only in {}", self.right)?;
        }
        for app in &self.apps {
            writeln!(f, "~ {}", app.app)?;
            for change in &app.changes {
                writeln!(
                    f,
                    "    {}: {} -> {}",
                    change.what,
                    shown(&change.left),
                    shown(&change.right)
                )?;
            }
            for (_, unified) in &app.files {
                for line in unified.lines() {
                    writeln!(f, "    {line}")?;
                }
            }
        }
        Ok(())
    }
}
