use std::fmt;
use std::sync::Arc;

/// A byte range in a manifest's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte; equal to `start` for a point.
    pub end: usize,
}

impl Span {
    /// The range `start..end`.
    #[must_use]
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end: end.max(start) }
    }
}

/// A 1-based line and column (columns count characters, as editors do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A manifest's text with the name it is reported under (a path, or `<string>`).
///
/// Cheap to clone: the text is shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    name: Arc<str>,
    text: Arc<str>,
    line_starts: Arc<[usize]>,
}

impl Source {
    /// Wraps `text`, reported as `name` in diagnostics. A leading UTF-8 byte-order mark, which
    /// YAML allows, is dropped. Lines end at `\n`, `\r\n` or a lone `\r` (old Mac files), as
    /// YAML counts them.
    #[must_use]
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        let mut text: String = text.into();
        if text.starts_with('\u{feff}') {
            text.drain(..'\u{feff}'.len_utf8());
        }
        let bytes = text.as_bytes();
        let line_starts = std::iter::once(0)
            .chain(bytes.iter().enumerate().filter_map(|(i, &b)| {
                let ends_line = b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
                ends_line.then_some(i + 1)
            }))
            .collect::<Vec<_>>()
            .into();
        Self { name: name.into().into(), text: text.into(), line_starts }
    }

    /// The name diagnostics show after `-->`.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole text.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The byte offset of a 1-based `line` and 0-based character `column` (as YAML parsers
    /// report them), clamped to the text.
    pub(crate) fn offset(&self, line: usize, char_column: usize) -> usize {
        let Some(&line_start) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let rest = &self.text[line_start..];
        let line_text = rest.split(['\n', '\r']).next().unwrap_or("");
        let within = line_text.char_indices().nth(char_column).map_or(line_text.len(), |(i, _)| i);
        line_start + within
    }

    /// The line and column of a byte offset.
    #[must_use]
    pub fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line_index = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let line_start = self.line_starts[line_index];
        let column = self.text.get(line_start..offset).map_or(0, |s| s.chars().count());
        Location { line: line_index + 1, column: column + 1 }
    }

    /// The end of the line that `offset` is on (before its newline).
    pub(crate) fn line_end(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.text[offset..].find(['\n', '\r']).map_or(self.text.len(), |i| offset + i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_locations_agree() {
        let src = Source::new("m.yaml", "a: 1\né: x\n\nlast");
        assert_eq!(src.offset(1, 0), 0);
        assert_eq!(src.offset(2, 3), 9); // `é` is two bytes
        assert_eq!(src.location(9), Location { line: 2, column: 4 });
        assert_eq!(src.location(src.offset(4, 2)), Location { line: 4, column: 3 });
        assert_eq!(src.offset(99, 0), src.text().len());
        assert_eq!(src.line_end(0), 4);
    }

    #[test]
    fn every_line_ending_counts_and_a_bom_is_dropped() {
        for text in ["a: 1\nb: x\nc", "a: 1\r\nb: x\r\nc", "a: 1\rb: x\rc", "\u{feff}a: 1\nb: x\nc"]
        {
            let src = Source::new("m.yaml", text);
            let b = src.text().find('b').unwrap();
            assert_eq!(src.location(b + 3), Location { line: 2, column: 4 }, "{text:?}");
            assert_eq!(src.offset(2, 3), b + 3, "{text:?}");
            assert_eq!(src.line_end(b), b + 4, "{text:?}");
            assert_eq!(src.location(src.text().len()).line, 3, "{text:?}");
        }
    }
}
