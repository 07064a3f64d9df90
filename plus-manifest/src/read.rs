//! Reading input from outside: a regular file (or a stream the caller chose), bounded by
//! [`Limits::max_bytes`] however large it claims to be, and decoded as UTF-8 with the line and
//! column of the first bad byte.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::diagnostic::{Diagnostic, Report, Rule};
use crate::error::ManifestError;
use crate::source::{Source, Span};
use crate::yaml::Limits;

/// Reads the regular file at `path`.
pub(crate) fn file(path: &Path, limits: Limits, what: &str) -> Result<Source, ManifestError> {
    let io = |source| ManifestError::Io { path: path.to_owned(), source };
    let name = path.display().to_string();
    // Look before opening (opening a FIFO blocks until a writer comes), and again at what was
    // opened.
    let is_file = |m: std::fs::Metadata| m.is_file();
    let mut regular = std::fs::metadata(path).map(is_file).map_err(io)?;
    let file = if regular { Some(File::open(path).map_err(io)?) } else { None };
    if let Some(f) = &file {
        regular = f.metadata().map(is_file).map_err(io)?;
    }
    let (Some(file), true) = (file, regular) else {
        let d = Diagnostic::error(Rule::NotAFile, "", format!("{name} is not a regular file"))
            .help("a device or a pipe could hold anything; read a pipe with `parse_reader`");
        return Err(Report::new(Source::new(name, ""), vec![d]).into());
    };
    stream(name, file, limits, what).map_err(|e| match e {
        ManifestError::Io { source, .. } => io(source),
        other => other,
    })
}

/// Reads `reader` to its end, or to one byte past the limit.
pub(crate) fn stream(
    name: String,
    reader: impl Read,
    limits: Limits,
    what: &str,
) -> Result<Source, ManifestError> {
    let mut bytes = Vec::new();
    let cap = u64::try_from(limits.max_bytes).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut bytes)
        .map_err(|source| ManifestError::Io { path: name.clone().into(), source })?;
    if bytes.len() > limits.max_bytes {
        let d = too_large(what, None, limits.max_bytes);
        return Err(Report::new(Source::new(name, ""), vec![d]).into());
    }
    Ok(utf8(name, bytes)?)
}

/// `bytes` as text, or a report naming the line and column of the first byte that is not UTF-8.
fn utf8(name: String, bytes: Vec<u8>) -> Result<Source, Report> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Source::new(name, text)),
        Err(err) => {
            let at = err.utf8_error().valid_up_to();
            let bad = err.as_bytes()[at];
            let valid = String::from_utf8_lossy(&err.as_bytes()[..at]).into_owned();
            let source = Source::new(name, valid);
            // The BOM, if any, was dropped from the text: count from where the text starts.
            let at = source.text().len();
            let d = Diagnostic::error(
                Rule::Encoding,
                "",
                format!(
                    "the input is not UTF-8: byte 0x{bad:02x} cannot start or continue a character"
                ),
            )
            .at(&source, Span::new(at, at))
            .label("first bad byte here")
            .help("save the file as UTF-8");
            Err(Report::new(source, vec![d]))
        }
    }
}

/// The diagnostic for input over [`Limits::max_bytes`]; `len` when it is known.
pub(crate) fn too_large(what: &str, len: Option<usize>, max: usize) -> Diagnostic {
    let size = len.map_or_else(|| "more than".to_owned(), |len| format!("{len} bytes,"));
    let message = match len {
        Some(_) => format!("{what} is {size} more than the limit of {max}"),
        None => format!("{what} is {size} {max} bytes, the limit"),
    };
    Diagnostic::error(Rule::TooLarge, "", message)
        .help(format!("if this {what} really is that large, raise `Limits::max_bytes`"))
}
