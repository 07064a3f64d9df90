//! The `manifest.yaml` a project keeps in its repository (Meituan's Plus build platform talk): a typed model, parsing,
//! validation, diagnostics a person can act on, and the environment-image key.
//!
//! Parsing never panics and never trusts its input: every problem in a file is reported (not
//! only the first), each with the file, line and column, the field path, a snippet with a caret
//! and, where there is one, a hint; hostile input (huge files, deep nesting, alias bombs) fails
//! fast within [`Limits`]. The crate does no I/O except in [`parse_file`].
//!
//! ```
//! use plus_manifest::{parse_str, Rule};
//!
//! let manifest = parse_str("manifest.yaml", "\
//! version: v1
//! build:
//!   tools:
//!     oracle-jdk: 8
//!     maven: 3.3.3
//!   run:
//!     cmd:
//!       - mvn package
//! ")?;
//! assert_eq!(manifest.build.as_ref().unwrap().tools["oracle-jdk"].as_str(), "8");
//! println!("image: {}", manifest.env_image_key());
//!
//! let report = parse_str("manifest.yaml", "\
//! version: v1
//! autodeploy:
//!   targetDir: /opt/app
//!   run: java -jar app.jar
//!   checkRetyr: 2
//! ").unwrap_err();
//! let diagnostic = &report.diagnostics()[0];
//! assert_eq!(diagnostic.rule, Rule::UnknownField);
//! assert_eq!(diagnostic.help.as_deref(), Some("did you mean `checkRetry`?"));
//! eprintln!("{report}"); // error: unknown field `checkRetyr` in `autodeploy`
//!                        //  --> manifest.yaml:5:3 ...
//! # Ok::<(), plus_manifest::Report>(())
//! ```
//!
//! # The rules
//!
//! Each [`Diagnostic`] names the [`Rule`] it reports.
//!
//! | rule | what is rejected |
//! |---|---|
//! | [`Rule::UnsupportedVersion`] | `version` other than `v1` |
//! | [`Rule::MissingField`] | `version`; `build.run` and `build.run.cmd` when `build` is present; `autodeploy.targetDir` and `autodeploy.run` when `autodeploy` is present |
//! | [`Rule::UnknownField`] | any field the format does not have, with "did you mean" for a near miss |
//! | [`Rule::DuplicateField`] | the same field or tool twice in one mapping |
//! | [`Rule::WrongType`] | a value of the wrong shape: a string where a list belongs, `true` as a version, ... |
//! | [`Rule::EmptyCommand`] | an empty `build.run.cmd`, or a blank command in it |
//! | [`Rule::InvalidRetry`] | `checkRetry` negative, fractional, quoted or above `u32::MAX` |
//! | [`Rule::IntervalWithoutUnit`] | `checkInterval: 30`: seconds or milliseconds? write `30s` |
//! | [`Rule::InvalidInterval`] | `checkInterval` that is not a humantime duration (`30s`, `1m 30s`, `500ms`) |
//! | [`Rule::RelativeTargetDir`] | `autodeploy.targetDir` not starting with `/` |
//! | [`Rule::EmptyToolName`] / [`Rule::InvalidToolVersion`] | an empty tool name; a missing, empty or whitespace-holding version |
//! | [`Rule::UnquotedNumericVersion`] | an unquoted version that YAML reads as a number which does not print back as written: `python: 3.10` is the float 3.1, `go: 1.20` is 1.2, `08` is 8, `1e3` is 1000. `oracle-jdk: 8` stays valid and means `"8"`. |
//! | [`Rule::EmptyValue`] | a blank `autodeploy.run` |
//! | [`Rule::InvalidAppCode`] / [`Rule::InvalidDependency`] | a bad application code; an application depending on itself, or a dependency listed twice |
//! | [`Rule::Syntax`], [`Rule::Empty`], [`Rule::MultipleDocuments`] | text that is not exactly one YAML document |
//! | [`Rule::TooLarge`], [`Rule::TooDeep`], [`Rule::TooManyNodes`] | input beyond [`Limits`] |
//! | [`Rule::Encoding`], [`Rule::NotAFile`] | input that is not UTF-8 (named by line and column), holds a NUL or another character YAML forbids, or is not a regular file (use [`parse_reader`] for pipes); a UTF-8 byte-order mark is accepted |
//!
//! # Dependency extensions (Qunar's dev/beta environment talk)
//!
//! For dependency-ordered deployment a manifest may name its application and what it needs, in the
//! same camelCase style; see [`Manifest`]:
//!
//! ```yaml
//! version: v1
//! app: order-api
//! dependsOn: [order-db, user-api]
//! optionalDependsOn: [search]
//! ```
//!
//! # Environments (Qunar's dev/beta environment talk)
//!
//! An environments file records every application once (source, build type, check, port,
//! dependencies, configuration templates) and defines environments layered `from` one another
//! (see the [`Environments`] format). [`parse_environments`] validates it with the same
//! diagnostics, [`Environments::resolve`] applies the layers and keeps each value's [`Origin`],
//! and with the `templates` feature `Resolved::render` fills the configuration templates
//! (strict: an unknown name is an error with its file, line and column), `Rendered::diff`
//! compares two environments, and secrets are masked in everything shown.
//!
//! ```
//! use plus_manifest::{Limits, Source, parse_environments};
//!
//! let environments = parse_environments(Source::new("environments.yaml", "\
//! version: v1
//! apps:
//!   - app: mysql
//!     source: git@example.com:infra/mysql.git
//!     buildType: docker
//!     check: /ping
//!     port: 3306
//! environments:
//!   - name: beta
//!     constants: { log_level: info }
//!     apps: { mysql: { branch: '5.7' } }
//!   - name: dev-alice
//!     from: beta
//!     constants: { log_level: debug }
//! "), Limits::default())?;
//! let dev = environments.resolve("dev-alice")?;
//! let mysql = &dev.apps["mysql"];
//! assert_eq!(mysql.branch.value, "5.7");
//! assert_eq!(mysql.branch.origin.to_string(), "environment dev-alice, from beta, mysql branch");
//! assert_eq!(dev.constants["log_level"].value.value, "debug");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | rule | what is rejected in an environments file |
//! |---|---|
//! | [`Rule::UnknownApplication`] | a dependency or an environment's application the registry does not define ("did you mean") |
//! | [`Rule::UnknownEnvironment`] / [`Rule::FromCycle`] | `from` naming no environment ("did you mean"); environments starting from one another in a circle |
//! | [`Rule::DependencyOutsideEnvironment`] / [`Rule::DependencyCycle`] | an application whose dependency the environment leaves out; dependencies in a circle |
//! | [`Rule::DuplicateName`] / [`Rule::InvalidName`] / [`Rule::InvalidPort`] | an application or environment defined twice; a bad environment or constant name, or `db` beside `db.host`; a port outside 1..=65535 |
//! | [`Rule::UnknownReference`] / [`Rule::TemplateSyntax`] | (rendering) a template naming what it cannot see; a template that is not one, or runs too long |
//!
//! # Performance
//!
//! Parse + validate of the Meituan Plus talk's manifest against `serde_yaml` parsing the same text into an
//! untyped `Value`: see `cargo bench -p benches --bench manifest` and BENCHMARKS.md.
#![doc(test(attr(deny(warnings))))]

mod decode;
mod diagnostic;
mod env;
mod error;
mod key;
mod model;
mod read;
mod rules;
mod source;
mod yaml;

use std::path::Path;

pub use diagnostic::{Diagnostic, Report, Rule, Severity};
#[cfg(feature = "templates")]
pub use env::{Address, Facts, Reference, RenderError, Rendered, RenderedFile, Templates};
pub use env::{
    App, AppSettings, Constant, Environment, Environments, Layer, Layered, Origin, ResolveError,
    Resolved, ResolvedApp, SECRET_MASK,
};
#[cfg(feature = "templates")]
pub use env::{AppDiff, Change, EnvDiff};
pub use error::ManifestError;
pub use key::{DEFAULT_BASE_OS, EnvImageKey};
pub use model::{
    AppEntry, Autodeploy, Build, BuildRun, Cache, Manifest, ManifestVersion, Target, Tools,
};
pub use source::{Location, Source, Span};
pub use yaml::Limits;

use diagnostic::Diagnostic as Diag;
use yaml::ReadError;

/// Parses and validates `text`, reporting problems under the file name `name`, with the default
/// [`Limits`].
///
/// # Errors
/// A [`Report`] holding every problem found.
pub fn parse_str(name: &str, text: &str) -> Result<Manifest, Report> {
    parse_source(Source::new(name, text), Limits::default())
}

/// Reads, parses and validates the file at `path`, with the default [`Limits`].
///
/// Only a regular file is read (a device or a FIFO is refused: read those with
/// [`parse_reader`]), and never more than [`Limits::max_bytes`] of it, whatever size it claims.
///
/// # Errors
/// [`ManifestError::Io`] when the file cannot be read, [`ManifestError::Invalid`] with every
/// problem found otherwise (including input that is not UTF-8, with the line and column of the
/// first bad byte).
pub fn parse_file(path: impl AsRef<Path>) -> Result<Manifest, ManifestError> {
    parse_file_with(path, Limits::default())
}

/// [`parse_file`] with explicit [`Limits`].
///
/// # Errors
/// As [`parse_file`].
pub fn parse_file_with(path: impl AsRef<Path>, limits: Limits) -> Result<Manifest, ManifestError> {
    let source = read::file(path.as_ref(), limits, "manifest")?;
    Ok(parse_source(source, limits)?)
}

/// Reads a manifest from a stream the caller chose (a pipe, standard input), named `name` in
/// diagnostics; reads at most [`Limits::max_bytes`] plus one byte.
///
/// # Errors
/// As [`parse_file`].
pub fn parse_reader(
    name: &str,
    reader: impl std::io::Read,
    limits: Limits,
) -> Result<Manifest, ManifestError> {
    let source = read::stream(name.to_owned(), reader, limits, "manifest")?;
    Ok(parse_source(source, limits)?)
}

/// Parses and validates `source` within `limits`.
///
/// # Errors
/// A [`Report`] holding every problem found.
pub fn parse_source(source: Source, limits: Limits) -> Result<Manifest, Report> {
    decode_document(source, limits, "manifest", "start with `version: v1`", |d, root| {
        d.manifest(root)
    })
}

/// Reads and validates a list of applications with their dependencies, the input of a
/// dependency-ordered deployment:
///
/// ```yaml
/// apps:
///   - app: web
///     dependsOn: [api, static]
///   - app: api
///     dependsOn: [db]
///     optionalDependsOn: [cache]
/// ```
///
/// With the same [`Limits`], rules and diagnostics as a manifest (unknown fields with "did you
/// mean", invalid codes, self or repeated dependencies, size, depth and node limits). Whether
/// the applications form a graph (no cycle, no unknown dependency) is the graph's to check.
///
/// # Errors
/// A [`Report`] holding every problem found.
pub fn parse_app_list(source: Source, limits: Limits) -> Result<Vec<AppEntry>, Report> {
    decode_document(source, limits, "application list", "start with `apps:`", |d, root| {
        d.app_list(root)
    })
}

/// [`parse_app_list`] of the regular file at `path`, read as [`parse_file`] reads.
///
/// # Errors
/// As [`parse_file`].
pub fn parse_app_list_file(
    path: impl AsRef<Path>,
    limits: Limits,
) -> Result<Vec<AppEntry>, ManifestError> {
    let source = read::file(path.as_ref(), limits, "application list")?;
    Ok(parse_app_list(source, limits)?)
}

/// Reads and validates an environments file (see [`Environments`]): the application
/// registry and the environments layered on it, every reference checked (an unknown
/// application or environment with "did you mean", a circle of `from`, a dependency outside an
/// environment, a circle of dependencies).
///
/// # Errors
/// A [`Report`] holding every problem found.
pub fn parse_environments(source: Source, limits: Limits) -> Result<Environments, Report> {
    decode_document(source, limits, "environments file", "start with `version: v1`", |d, root| {
        d.environments(root)
    })
}

/// [`parse_environments`] of the regular file at `path`, read as [`parse_file`] reads.
///
/// # Errors
/// As [`parse_file`].
pub fn parse_environments_file(
    path: impl AsRef<Path>,
    limits: Limits,
) -> Result<Environments, ManifestError> {
    let source = read::file(path.as_ref(), limits, "environments file")?;
    Ok(parse_environments(source, limits)?)
}

/// Reads `source` as one YAML document within `limits` and decodes it with `decode`, reporting
/// every problem found.
fn decode_document<T>(
    source: Source,
    limits: Limits,
    what: &str,
    start_hint: &str,
    decode: impl FnOnce(&mut decode::Decoder<'_>, &yaml::Node) -> Option<T>,
) -> Result<T, Report> {
    let root = match yaml::read(&source, limits) {
        Ok(Some(root)) if !root.is_null() => root,
        Ok(_) => {
            let d = Diag::error(Rule::Empty, "", format!("{what} is empty")).help(start_hint);
            return Err(Report::new(source, vec![d]));
        }
        Err(err) => {
            let d = read_error(&source, what, err);
            return Err(Report::new(source, vec![d]));
        }
    };
    let mut decoder = decode::Decoder::new(&source);
    let value = decode(&mut decoder, &root);
    let mut diagnostics = decoder.diagnostics;
    diagnostics.sort_by_key(|d| d.span.map(|s| s.start));
    match value {
        Some(value) if diagnostics.is_empty() => Ok(value),
        _ => {
            // Every path that returns no value reported why.
            assert!(!diagnostics.is_empty(), "{what} rejected without a diagnostic");
            Err(Report::new(source, diagnostics))
        }
    }
}

fn read_error(source: &Source, what: &str, err: ReadError) -> Diag {
    match err {
        ReadError::Syntax { span, message } if message.contains("recursion limit") => {
            Diag::error(Rule::TooDeep, "", "nesting deeper than the YAML parser allows")
                .at(source, span)
                .label("too deep")
        }
        ReadError::Syntax { span, message } => {
            Diag::error(Rule::Syntax, "", format!("invalid YAML: {message}"))
                .at(source, span)
                .label("here")
        }
        ReadError::TooLarge { len, max } => read::too_large(what, Some(len), max),
        ReadError::TooDeep { span, max } => {
            Diag::error(Rule::TooDeep, "", format!("nesting deeper than {max} levels"))
                .at(source, span)
                .label("too deep")
        }
        ReadError::TooManyNodes { span, max, aliased } => {
            let diagnostic = Diag::error(
                Rule::TooManyNodes,
                "",
                if aliased {
                    format!("document expands to more than {max} nodes")
                } else {
                    format!("document holds more than {max} nodes")
                },
            )
            .at(source, span)
            .label("limit reached here");
            if aliased {
                diagnostic
                    .help("aliases (`*name`) repeat what they point to; nested aliases multiply")
            } else {
                diagnostic.help("if it really is that large, raise `Limits::max_nodes`")
            }
        }
        ReadError::MultipleDocuments { span } => Diag::error(
            Rule::MultipleDocuments,
            "",
            format!("{what} holds more than one YAML document"),
        )
        .at(source, span)
        .label("second document"),
        ReadError::ForbiddenChar { span, ch } => Diag::error(
            Rule::Encoding,
            "",
            format!(
                "{what} holds the character U+{:04X}, which YAML does not allow",
                u32::from(ch)
            ),
        )
        .at(source, span)
        .label("here")
        .help("the whole input is rejected: nothing after this character was read as YAML"),
    }
}

impl Manifest {
    /// The manifest as YAML. Parsing the result gives back an equal manifest.
    #[must_use]
    pub fn to_yaml(&self) -> String {
        yaml::write(self)
    }
}

impl std::str::FromStr for Manifest {
    type Err = Report;
    /// [`parse_str`] with the name `<string>`.
    fn from_str(s: &str) -> Result<Self, Report> {
        parse_str("<string>", s)
    }
}
