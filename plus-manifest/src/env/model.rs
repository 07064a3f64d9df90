//! What an environments file holds: the application registry (base information once, talk
//! 004's `app_code` and its record) and the environments layered on it.

use std::collections::BTreeMap;

use plus_core::AppCode;
use serde::{Deserialize, Serialize};

/// An environments file: every application recorded once, and the environments built from them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environments {
    /// The applications, by code.
    pub apps: BTreeMap<AppCode, App>,
    /// The environments, by name.
    pub environments: BTreeMap<String, Environment>,
}

/// An application's base information, recorded once and used by every environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Its code, the one identifier every system knows it by.
    pub code: AppCode,
    /// Where its source lives (the talk's `scm_root`).
    pub source: String,
    /// How it is built (`maven`, `go`, `docker`, ...), unless an environment says otherwise.
    pub build_type: String,
    /// The path its check answers on once it is up (`/health`), asked on its own address.
    pub check: String,
    /// The port it listens on.
    pub port: u16,
    /// The branch built unless an environment names another.
    pub branch: String,
    /// Applications deployed and healthy before this one starts.
    pub depends_on: Vec<AppCode>,
    /// Its configuration files: templates, by path relative to the environments file.
    pub config: Vec<String>,
}

/// One environment: a set of applications, with constants and per-application settings, on
/// top of the environment it starts `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// Its name (`beta`, `dev-alice`).
    pub name: String,
    /// The environment it starts from: its applications, constants and settings, with this
    /// one's on top.
    pub from: Option<String>,
    /// Constants its templates may name, over the ones it starts from.
    pub constants: BTreeMap<String, Constant>,
    /// Its applications with what they override here; those of `from` are included too.
    pub apps: BTreeMap<AppCode, AppSettings>,
    /// Applications of `from` this one leaves out.
    pub without: Vec<AppCode>,
}

/// A constant's value; a secret one never appears in logs, diagnostics, reports or diffs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constant {
    /// The value.
    pub value: String,
    /// Whether it is a secret.
    pub secret: bool,
}

impl Constant {
    /// A constant that may be shown.
    #[must_use]
    pub fn plain(value: impl Into<String>) -> Self {
        Self { value: value.into(), secret: false }
    }

    /// A secret constant.
    #[must_use]
    pub fn secret(value: impl Into<String>) -> Self {
        Self { value: value.into(), secret: true }
    }

    /// The value as it may be shown: a secret's is masked.
    #[must_use]
    pub fn shown(&self) -> &str {
        if self.secret { SECRET_MASK } else { &self.value }
    }
}

/// What is shown in place of a secret value.
pub const SECRET_MASK: &str = "<secret>";

impl std::fmt::Debug for Constant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constant")
            .field("value", &self.shown())
            .field("secret", &self.secret)
            .finish()
    }
}

/// What an environment overrides of one application's base information; unset fields keep
/// the value of the layer below.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSettings {
    /// The branch to build.
    pub branch: Option<String>,
    /// How to build it.
    pub build_type: Option<String>,
    /// The path its check answers on.
    pub check: Option<String>,
    /// The port it listens on.
    pub port: Option<u16>,
    /// Constants for this application only, over the environment's.
    pub constants: BTreeMap<String, Constant>,
}
