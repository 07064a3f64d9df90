//! One environment resolved through its layers: the registry's base information, then each
//! environment of its `from` chain from the farthest to itself, every value keeping the layer
//! it came from.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use plus_core::AppCode;
use serde::{Deserialize, Serialize};

use super::decode::prefix_conflict;
use super::model::{App, Constant, Environments};
use crate::decode::closest;

/// The layer a value was set in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layer {
    /// The application's base information, recorded once.
    Registry,
    /// An environment of the chain.
    Environment(String),
}

/// Where a value of a resolved environment came from:
/// `environment dev-alice, from beta, constant mysql.host`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The environment resolved.
    pub environment: String,
    /// The layer that set the value.
    pub layer: Layer,
    /// What the value is (`constant mysql.host`, `user-service buildType`).
    pub item: String,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "environment {}, ", self.environment)?;
        match &self.layer {
            Layer::Environment(layer) if *layer == self.environment => {}
            Layer::Environment(layer) => write!(f, "from {layer}, ")?,
            Layer::Registry => write!(f, "from the application registry, ")?,
        }
        write!(f, "{}", self.item)
    }
}

/// A value with the layer it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layered<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub origin: Origin,
}

/// One application as an environment runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedApp {
    /// Its code.
    pub code: AppCode,
    /// Where its source lives.
    pub source: String,
    /// The branch built.
    pub branch: Layered<String>,
    /// How it is built.
    pub build_type: Layered<String>,
    /// The path its check answers on.
    pub check: Layered<String>,
    /// The port it listens on.
    pub port: Layered<u16>,
    /// What it needs up before it starts (all in the environment).
    pub depends_on: Vec<AppCode>,
    /// Its configuration templates.
    pub config: Vec<String>,
    /// The constants its templates see: the environment's, with its own on top.
    pub constants: BTreeMap<String, Layered<Constant>>,
}

/// An environment with every layer applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// Its name.
    pub name: String,
    /// It and the environments it starts from, itself first.
    pub chain: Vec<String>,
    /// Its constants, layered.
    pub constants: BTreeMap<String, Layered<Constant>>,
    /// Its applications.
    pub apps: BTreeMap<AppCode, ResolvedApp>,
}

/// Why an environment cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// No environment has this name.
    #[error("no environment `{name}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownEnvironment {
        /// The name asked for.
        name: String,
        /// The closest defined name, if one is close.
        suggestion: Option<String>,
    },
    /// The `from` chain comes back around.
    #[error("environments start from one another in a circle: {}", chain.join(" -> "))]
    FromCycle {
        /// The circle, its first environment repeated at the end.
        chain: Vec<String>,
    },
    /// An environment names an application the registry does not hold.
    #[error("environment `{environment}` names `{app}`, which the registry does not define")]
    UnknownApplication {
        /// The environment.
        environment: String,
        /// The application.
        app: AppCode,
    },
    /// An application depends on one the environment does not include.
    #[error(
        "in environment `{environment}`, `{app}` depends on `{dependency}`, which the environment does not include"
    )]
    DependencyOutsideEnvironment {
        /// The environment.
        environment: String,
        /// The application.
        app: AppCode,
        /// Its dependency outside the environment.
        dependency: AppCode,
    },
    /// Applications of the environment depend on one another in a circle.
    #[error("in environment `{environment}`, applications depend on one another in a circle: {}", apps.iter().map(AppCode::as_str).collect::<Vec<_>>().join(", "))]
    DependencyCycle {
        /// The environment.
        environment: String,
        /// The applications that cannot be ordered.
        apps: Vec<AppCode>,
    },
    /// Layering made one constant both a value and a group (`db`, `db.host`).
    #[error("in environment `{environment}`, constants `{short}` and `{long}` cannot both exist")]
    ConstantConflict {
        /// The environment.
        environment: String,
        /// The shorter name.
        short: String,
        /// The longer one.
        long: String,
    },
}

impl Environments {
    /// Resolves environment `name` through its layers.
    ///
    /// # Errors
    /// A [`ResolveError`] naming what does not hold together.
    pub fn resolve(&self, name: &str) -> Result<Resolved, ResolveError> {
        let chain = self.chain(name)?;
        let origin =
            |layer: Layer, item: String| Origin { environment: name.to_owned(), layer, item };
        let mut constants: BTreeMap<String, Layered<Constant>> = BTreeMap::new();
        let mut apps: BTreeMap<AppCode, ResolvedApp> = BTreeMap::new();
        for layer_name in chain.iter().rev() {
            let layer = &self.environments[layer_name];
            let here = || Layer::Environment(layer_name.clone());
            for (key, value) in &layer.constants {
                let layered = Layered {
                    value: value.clone(),
                    origin: origin(here(), format!("constant {key}")),
                };
                constants.insert(key.clone(), layered);
            }
            for code in &layer.without {
                apps.remove(code);
            }
            for (code, settings) in &layer.apps {
                let app = match apps.get_mut(code) {
                    Some(app) => app,
                    None => {
                        let base = self.apps.get(code).ok_or_else(|| {
                            ResolveError::UnknownApplication {
                                environment: name.to_owned(),
                                app: code.clone(),
                            }
                        })?;
                        apps.entry(code.clone()).or_insert(from_registry(base, name))
                    }
                };
                let item = |field: &str| format!("{code} {field}");
                if let Some(branch) = &settings.branch {
                    app.branch =
                        Layered { value: branch.clone(), origin: origin(here(), item("branch")) };
                }
                if let Some(build_type) = &settings.build_type {
                    app.build_type = Layered {
                        value: build_type.clone(),
                        origin: origin(here(), item("buildType")),
                    };
                }
                if let Some(check) = &settings.check {
                    app.check =
                        Layered { value: check.clone(), origin: origin(here(), item("check")) };
                }
                if let Some(port) = settings.port {
                    app.port = Layered { value: port, origin: origin(here(), item("port")) };
                }
                for (key, value) in &settings.constants {
                    let layered = Layered {
                        value: value.clone(),
                        origin: origin(here(), format!("constant {key} of {code}")),
                    };
                    app.constants.insert(key.clone(), layered);
                }
            }
        }
        // Each application sees the environment's constants under its own.
        for app in apps.values_mut() {
            for (key, value) in &constants {
                app.constants.entry(key.clone()).or_insert_with(|| value.clone());
            }
            if let Some((short, long)) = prefix_conflict(app.constants.keys()) {
                return Err(ResolveError::ConstantConflict {
                    environment: name.to_owned(),
                    short: short.clone(),
                    long: long.clone(),
                });
            }
        }
        let resolved = Resolved { name: name.to_owned(), chain, constants, apps };
        resolved.levels()?;
        Ok(resolved)
    }

    /// `name` and the environments it starts from, itself first.
    fn chain(&self, name: &str) -> Result<Vec<String>, ResolveError> {
        let mut chain: Vec<String> = Vec::new();
        let mut at = Some(name.to_owned());
        while let Some(current) = at {
            let Some(environment) = self.environments.get(&current) else {
                let names = self.environments.keys().map(String::as_str);
                return Err(ResolveError::UnknownEnvironment {
                    suggestion: closest(&current, names).map(str::to_owned),
                    name: current,
                });
            };
            if let Some(position) = chain.iter().position(|c| *c == current) {
                let mut circle = chain[position..].to_vec();
                circle.push(current);
                return Err(ResolveError::FromCycle { chain: circle });
            }
            chain.push(current);
            at = environment.from.clone();
        }
        Ok(chain)
    }
}

fn from_registry(app: &App, environment: &str) -> ResolvedApp {
    let origin = |field: &str| Origin {
        environment: environment.to_owned(),
        layer: Layer::Registry,
        item: format!("{} {field}", app.code),
    };
    ResolvedApp {
        code: app.code.clone(),
        source: app.source.clone(),
        branch: Layered { value: app.branch.clone(), origin: origin("branch") },
        build_type: Layered { value: app.build_type.clone(), origin: origin("buildType") },
        check: Layered { value: app.check.clone(), origin: origin("check") },
        port: Layered { value: app.port, origin: origin("port") },
        depends_on: app.depends_on.clone(),
        config: app.config.clone(),
        constants: BTreeMap::new(),
    }
}

impl Resolved {
    /// The deployment order: levels of applications, each level's dependencies all in earlier
    /// levels (a level's applications can start together), each level sorted by code.
    ///
    /// # Errors
    /// [`ResolveError::DependencyOutsideEnvironment`] or [`ResolveError::DependencyCycle`].
    pub fn levels(&self) -> Result<Vec<Vec<AppCode>>, ResolveError> {
        for app in self.apps.values() {
            if let Some(dependency) = app.depends_on.iter().find(|d| !self.apps.contains_key(*d)) {
                return Err(ResolveError::DependencyOutsideEnvironment {
                    environment: self.name.clone(),
                    app: app.code.clone(),
                    dependency: dependency.clone(),
                });
            }
        }
        let mut placed: BTreeSet<&AppCode> = BTreeSet::new();
        let mut levels = Vec::new();
        while placed.len() < self.apps.len() {
            let level: Vec<AppCode> = self
                .apps
                .values()
                .filter(|a| {
                    !placed.contains(&a.code) && a.depends_on.iter().all(|d| placed.contains(d))
                })
                .map(|a| a.code.clone())
                .collect();
            if level.is_empty() {
                let apps = self.apps.keys().filter(|c| !placed.contains(c)).cloned().collect();
                return Err(ResolveError::DependencyCycle { environment: self.name.clone(), apps });
            }
            placed.extend(level.iter().filter_map(|c| self.apps.get_key_value(c).map(|(k, _)| k)));
            levels.push(level);
        }
        Ok(levels)
    }
}
