//! Environments (Qunar's dev/beta environment talk): every application recorded once under its code, environments
//! layered `from` one another with overrides, and (feature `templates`) configuration files
//! rendered per environment.
//!
//! An environments file:
//!
//! ```yaml
//! version: v1
//! apps:
//!   - app: mysql
//!     source: git@git.example.com:infra/mysql.git
//!     buildType: docker
//!     check: /health
//!     port: 3306
//!   - app: user-service
//!     source: git@git.example.com:user/user-service.git
//!     buildType: maven
//!     check: /healthcheck
//!     port: 8080
//!     dependsOn: [mysql]
//!     config: [config/user-service/application.properties]
//! environments:
//!   - name: beta
//!     constants:
//!       log_level: info
//!       mysql.password: { value: s3cret, secret: true }
//!     apps:
//!       mysql: { branch: "5.7" }
//!       user-service: {}
//!   - name: dev-alice
//!     from: beta
//!     constants:
//!       log_level: debug
//!     apps:
//!       user-service: { branch: feature/login, buildType: gradle }
//! ```
//!
//! An application's base information (`source`, `buildType`, `check`, `port`, `branch`
//! (default `master`), `dependsOn`, `config`) is written once. An environment holds the
//! applications of the one it starts `from`, less those in its `without`, plus its own `apps`;
//! for each it may override `branch`, `buildType`, `check`, `port` and add `constants` of that
//! application only. Its `constants` lay over those it starts from. A constant is a string, or
//! `{ value: ..., secret: true }` for one never shown. [`Environments::resolve`] applies the
//! layers and keeps, for every value, the [`Origin`] it came from.

mod decode;
#[cfg(feature = "templates")]
mod diff;
mod layers;
mod model;
#[cfg(feature = "templates")]
mod render;

#[cfg(feature = "templates")]
pub use diff::{AppDiff, Change, EnvDiff};
pub use layers::{Layer, Layered, Origin, ResolveError, Resolved, ResolvedApp};
pub use model::{App, AppSettings, Constant, Environment, Environments, SECRET_MASK};
#[cfg(feature = "templates")]
pub use render::{Address, Facts, Reference, RenderError, Rendered, RenderedFile, Templates};
