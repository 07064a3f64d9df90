use std::fmt;

use annotate_snippets::{Level, Renderer, Snippet};

use crate::source::{Location, Source, Span};

/// Which rule a [`Diagnostic`] reports. Each rule is documented in the crate root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// The text is not YAML.
    Syntax,
    /// The input is not UTF-8, or holds a character YAML forbids (a NUL byte, a control
    /// character): it is rejected whole, never read up to that point.
    Encoding,
    /// The path is not a regular file (a device, a FIFO, a directory); read pipes with
    /// [`parse_reader`](crate::parse_reader).
    NotAFile,
    /// The input is larger than [`Limits::max_bytes`](crate::Limits::max_bytes).
    TooLarge,
    /// Lists and mappings nest deeper than [`Limits::max_depth`](crate::Limits::max_depth).
    TooDeep,
    /// The document, aliases expanded, holds more than
    /// [`Limits::max_nodes`](crate::Limits::max_nodes) nodes.
    TooManyNodes,
    /// The file holds more than one YAML document.
    MultipleDocuments,
    /// The file holds no document at all.
    Empty,
    /// A value has the wrong shape (a list where a string belongs, ...).
    WrongType,
    /// A required field is missing.
    MissingField,
    /// A field this format does not have (with a "did you mean" when one is close).
    UnknownField,
    /// The same field twice in one mapping.
    DuplicateField,
    /// `version` is not one of [`ManifestVersion::SUPPORTED`](crate::ManifestVersion::SUPPORTED).
    UnsupportedVersion,
    /// `build.run.cmd` is empty, or one of its commands is blank.
    EmptyCommand,
    /// `autodeploy.checkRetry` is negative or not a whole number.
    InvalidRetry,
    /// `autodeploy.checkInterval` is a bare number: `30` could be seconds or milliseconds.
    IntervalWithoutUnit,
    /// `autodeploy.checkInterval` is not a duration humantime can read.
    InvalidInterval,
    /// `autodeploy.targetDir` is not an absolute path.
    RelativeTargetDir,
    /// A tool name is empty.
    EmptyToolName,
    /// A tool version is empty or not a valid version string.
    InvalidToolVersion,
    /// An unquoted tool version that YAML reads as a number which does not print back as written
    /// (`3.10` is the float 3.1).
    UnquotedNumericVersion,
    /// A blank string where text is required (`autodeploy.run`).
    EmptyValue,
    /// `app`, `dependsOn` or `optionalDependsOn` holds an invalid application code.
    InvalidAppCode,
    /// An application depends on itself, or lists a dependency twice.
    InvalidDependency,
    /// An environments file names an application its registry does not hold.
    UnknownApplication,
    /// An environment starts `from` one the file does not define.
    UnknownEnvironment,
    /// Environments start `from` one another in a circle.
    FromCycle,
    /// An application of an environment depends on one the environment does not include.
    DependencyOutsideEnvironment,
    /// Applications depend on one another in a circle: no order brings them up.
    DependencyCycle,
    /// The same application or environment defined twice.
    DuplicateName,
    /// An environment or constant name outside the allowed alphabet, or a constant that is
    /// also the prefix of another (`db` and `db.host`).
    InvalidName,
    /// A port that is not a whole number from 1 to 65535.
    InvalidPort,
    /// A configuration template names a constant, dependency or field that does not exist
    /// (never rendered as an empty string).
    UnknownReference,
    /// A configuration template that is not a valid template.
    TemplateSyntax,
}

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The manifest is rejected.
    Error,
    /// The manifest is accepted; something deserves a look.
    Warning,
}

/// One problem found in a manifest: what, where, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The rule broken.
    pub rule: Rule,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, in lowercase without a trailing period (`unknown field `checkRetyr``).
    pub message: String,
    /// The field path (`autodeploy.checkRetry`, `build.run.cmd[0]`); empty for the whole file.
    pub path: String,
    /// Where in the text, when the problem has a place.
    pub span: Option<Span>,
    /// `span`'s start as line and column.
    pub location: Option<Location>,
    /// A short label shown under the caret.
    pub label: String,
    /// How to fix it, when there is something to say.
    pub help: Option<String>,
}

impl Diagnostic {
    pub(crate) fn error(rule: Rule, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            rule,
            severity: Severity::Error,
            message: message.into(),
            path: path.into(),
            span: None,
            location: None,
            label: String::new(),
            help: None,
        }
    }

    pub(crate) fn at(mut self, source: &Source, span: Span) -> Self {
        // A problem found at the end of the input (an unclosed list) is shown just after the last
        // visible character, where the fix goes, not on an empty last line.
        let visible_end = source.text().trim_end().len();
        let span =
            if span.start > visible_end { Span::new(visible_end, visible_end) } else { span };
        let text = source.text();
        let mut start = span.start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = span.end.clamp(start, text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        let span = Span::new(start, end);
        self.span = Some(span);
        self.location = Some(source.location(span.start));
        self
    }

    pub(crate) fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Every problem found in one manifest, with its source, ready to print.
///
/// `Display` renders the diagnostics the way rustc and cargo do, without colour:
///
/// ```text
/// error: unknown field `checkRetyr` in `autodeploy`
///  --> manifest.yaml:8:3
///   |
/// 8 |   checkRetyr: 2
///   |   ^^^^^^^^^^ unknown field
///   |
///   = help: did you mean `checkRetry`?
///   = note: field: autodeploy.checkRetyr
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    source: Source,
    diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub(crate) fn new(source: Source, diagnostics: Vec<Diagnostic>) -> Self {
        Self { source, diagnostics }
    }

    /// The manifest the diagnostics are about.
    #[must_use]
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Every diagnostic, in the order of the text.
    #[must_use]
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// How many diagnostics are errors.
    #[must_use]
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error).count()
    }

    /// Renders every diagnostic, with ANSI colours when `color` is true.
    #[must_use]
    pub fn render(&self, color: bool) -> String {
        let renderer = if color { Renderer::styled() } else { Renderer::plain() };
        let mut out = String::new();
        for diagnostic in &self.diagnostics {
            out.push_str(&render_one(&renderer, &self.source, diagnostic));
            out.push_str("\n\n");
        }
        let errors = self.error_count();
        if errors > 0 {
            let plural = if errors == 1 { "" } else { "s" };
            out.push_str(&format!(
                "error: could not read `{}` due to {errors} previous error{plural}",
                self.source.name()
            ));
        }
        out
    }
}

fn render_one(renderer: &Renderer, source: &Source, diagnostic: &Diagnostic) -> String {
    let level = match diagnostic.severity {
        Severity::Error => Level::Error,
        Severity::Warning => Level::Warning,
    };
    let note = (!diagnostic.path.is_empty()).then(|| format!("field: {}", diagnostic.path));
    let mut message = level.title(&diagnostic.message);
    // The snippet renderer ends lines at `\n` only: a lone `\r` (old Mac files), which YAML
    // and `Source` count as a line end, becomes `\n`, byte for byte, so spans stay valid.
    let shown = lone_cr_as_newline(source.text());
    if let Some(span) = diagnostic.span {
        let text = source.text();
        // A caret needs at least one character; at the very end, point at the last one.
        let start = span.start.min(text.len());
        let end = span.end.clamp(start, text.len());
        let range = if start == end {
            let back = text[..start].chars().next_back().map_or(0, char::len_utf8);
            if start < text.len() {
                start..start + text[start..].chars().next().map_or(0, char::len_utf8)
            } else {
                start - back..start
            }
        } else {
            start..end
        };
        message = message.snippet(
            Snippet::source(&shown)
                .line_start(1)
                .origin(source.name())
                .fold(true)
                .annotation(level.span(range).label(&diagnostic.label)),
        );
    } else {
        message = message.footer(Level::Note.title(source.name()));
    }
    if let Some(help) = &diagnostic.help {
        message = message.footer(Level::Help.title(help));
    }
    if let Some(note) = &note {
        message = message.footer(Level::Note.title(note));
    }
    renderer.render(message).to_string()
}

fn lone_cr_as_newline(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let lone = |i: usize| bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n');
    if !(0..bytes.len()).any(lone) {
        return std::borrow::Cow::Borrowed(text);
    }
    let replaced: Vec<u8> =
        (0..bytes.len()).map(|i| if lone(i) { b'\n' } else { bytes[i] }).collect();
    // Only ASCII bytes were swapped for ASCII bytes.
    std::borrow::Cow::Owned(String::from_utf8(replaced).unwrap_or_else(|_| text.to_owned()))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}
