//! The `manifest.yaml` a project keeps in its repository (seed 000): a typed model, parsing,
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
//!
//! # Dependency extensions (seed 004)
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
//! # Performance
//!
//! Parse + validate of seed 000's manifest against `serde_yaml` parsing the same text into an
//! untyped `Value`: see `cargo bench -p benches --bench manifest` and BENCHMARKS.md.
#![doc(test(attr(deny(warnings))))]

mod decode;
mod diagnostic;
mod error;
mod key;
mod model;
mod rules;
mod source;
mod yaml;

use std::path::Path;

pub use diagnostic::{Diagnostic, Report, Rule, Severity};
pub use error::ManifestError;
pub use key::{DEFAULT_BASE_OS, EnvImageKey};
pub use model::{Autodeploy, Build, BuildRun, Cache, Manifest, ManifestVersion, Target, Tools};
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
/// The size limit is checked against the file's metadata before it is read.
///
/// # Errors
/// [`ManifestError::Io`] when the file cannot be read (or is not UTF-8),
/// [`ManifestError::Invalid`] with every problem found otherwise.
pub fn parse_file(path: impl AsRef<Path>) -> Result<Manifest, ManifestError> {
    parse_file_with(path, Limits::default())
}

/// [`parse_file`] with explicit [`Limits`].
///
/// # Errors
/// As [`parse_file`].
pub fn parse_file_with(path: impl AsRef<Path>, limits: Limits) -> Result<Manifest, ManifestError> {
    let path = path.as_ref();
    let io = |source| ManifestError::Io { path: path.to_owned(), source };
    let name = path.display().to_string();
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > limits.max_bytes as u64 {
        let diagnostic = too_large(usize::try_from(len).unwrap_or(usize::MAX), limits.max_bytes);
        return Err(Report::new(Source::new(name, ""), vec![diagnostic]).into());
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    Ok(parse_source(Source::new(name, text), limits)?)
}

fn too_large(len: usize, max: usize) -> Diag {
    Diag::error(
        Rule::TooLarge,
        "",
        format!("manifest is {len} bytes, more than the limit of {max}"),
    )
    .help(
        "a manifest describes a build; if this one really is that large, raise `Limits::max_bytes`",
    )
}

/// Parses and validates `source` within `limits`.
///
/// # Errors
/// A [`Report`] holding every problem found.
pub fn parse_source(source: Source, limits: Limits) -> Result<Manifest, Report> {
    let root = match yaml::read(&source, limits) {
        Ok(Some(root)) if !root.is_null() => root,
        Ok(_) => {
            let d =
                Diag::error(Rule::Empty, "", "manifest is empty").help("start with `version: v1`");
            return Err(Report::new(source, vec![d]));
        }
        Err(err) => {
            let d = match err {
                ReadError::Syntax { span, message } if message.contains("recursion limit") => {
                    Diag::error(Rule::TooDeep, "", "nesting deeper than the YAML parser allows")
                        .at(&source, span)
                        .label("too deep")
                }
                ReadError::Syntax { span, message } => {
                    Diag::error(Rule::Syntax, "", format!("invalid YAML: {message}"))
                        .at(&source, span)
                        .label("here")
                }
                ReadError::TooLarge { len, max } => too_large(len, max),
                ReadError::TooDeep { span, max } => {
                    Diag::error(Rule::TooDeep, "", format!("nesting deeper than {max} levels"))
                        .at(&source, span)
                        .label("too deep")
                }
                ReadError::TooManyNodes { span, max } => Diag::error(
                    Rule::TooManyNodes,
                    "",
                    format!("document expands to more than {max} nodes"),
                )
                .at(&source, span)
                .label("limit reached here")
                .help("aliases (`*name`) repeat what they point to; nested aliases multiply"),
                ReadError::MultipleDocuments { span } => Diag::error(
                    Rule::MultipleDocuments,
                    "",
                    "manifest holds more than one YAML document",
                )
                .at(&source, span)
                .label("second document"),
            };
            return Err(Report::new(source, vec![d]));
        }
    };
    let mut decoder = decode::Decoder::new(&source);
    let manifest = decoder.manifest(&root);
    let mut diagnostics = decoder.diagnostics;
    diagnostics.sort_by_key(|d| d.span.map(|s| s.start));
    match manifest {
        Some(manifest) if diagnostics.is_empty() => Ok(manifest),
        _ => {
            // Every path that returns no manifest reported why.
            assert!(!diagnostics.is_empty(), "manifest rejected without a diagnostic");
            Err(Report::new(source, diagnostics))
        }
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
