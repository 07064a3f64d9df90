//! The one module that knows which YAML libraries `plus-manifest` uses.
//!
//! Reading goes through `yaml-rust2`'s event parser because diagnostics need the position of every
//! node and the way each scalar was written (plain or quoted), which typed deserializers throw
//! away. Writing is [`write`]: block style from the model's serde value tree, every string
//! double-quoted, so nothing reads back as another type. Swapping the library touches this file
//! only.

use std::collections::HashMap;

use yaml_rust2::Event;
use yaml_rust2::parser::Parser;
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::source::{Source, Span};

/// How a scalar was written; only plain scalars are subject to YAML's type resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Plain,
    Quoted,
    Block,
}

/// A YAML node with the span it came from.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) span: Span,
    pub(crate) value: Value,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Scalar { text: String, style: Style },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    fn weight(&self) -> usize {
        match &self.value {
            Value::Scalar { .. } => 1,
            Value::Seq(items) => 1 + items.iter().map(Node::weight).sum::<usize>(),
            Value::Map(entries) => {
                1 + entries.iter().map(|(k, v)| k.weight() + v.weight()).sum::<usize>()
            }
        }
    }

    /// True for `~`, `null`, `Null`, `NULL` and the empty plain scalar.
    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, style: Style::Plain }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What a person would call this node in "expected X, found Y".
    pub(crate) fn describe(&self) -> String {
        match &self.value {
            Value::Seq(_) => "a list".to_owned(),
            Value::Map(_) => "a mapping".to_owned(),
            _ if self.is_null() => "nothing (null)".to_owned(),
            Value::Scalar { text, .. } => format!("`{text}`"),
        }
    }
}

/// Limits on what the reader accepts, so that hostile input fails fast with bounded memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted input, in bytes. Default: 1 MiB (real manifests are a few hundred bytes).
    pub max_bytes: usize,
    /// Deepest accepted nesting of lists and mappings. Default: 32.
    pub max_depth: usize,
    /// Most nodes a document may hold once aliases are expanded. Default: 100,000. This is what
    /// stops "billion laughs": each alias is charged the size of what it repeats before anything
    /// is copied.
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_bytes: 1 << 20, max_depth: 32, max_nodes: 100_000 }
    }
}

/// Why the text could not be read as one YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadError {
    Syntax {
        span: Span,
        message: String,
    },
    TooLarge {
        len: usize,
        max: usize,
    },
    TooDeep {
        span: Span,
        max: usize,
    },
    TooManyNodes {
        span: Span,
        max: usize,
        /// Whether the document used aliases (then they are the likely cause).
        aliased: bool,
    },
    MultipleDocuments {
        span: Span,
    },
    /// A character YAML does not allow in a document (a NUL byte, most control characters).
    ForbiddenChar {
        span: Span,
        ch: char,
    },
}

/// Whether YAML 1.2 allows `c` in a document (its `c-printable` set).
fn printable(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}'
        | '\u{10000}'..='\u{10ffff}')
}

struct Builder<'s> {
    source: &'s Source,
    limits: Limits,
    /// Containers being built: the node under construction and, for maps, a pending key.
    stack: Vec<(Node, Option<Node>)>,
    anchors: HashMap<usize, Node>,
    /// Anchor id of each open container, so the finished node can be registered.
    open_anchors: Vec<usize>,
    nodes: usize,
    /// Whether an alias has been expanded.
    aliased: bool,
    root: Option<Node>,
    documents: usize,
}

impl Builder<'_> {
    fn span_at(&self, mark: Marker) -> usize {
        self.source.offset(mark.line(), mark.col())
    }

    fn charge(&mut self, weight: usize, span: Span) -> Result<(), ReadError> {
        self.nodes = self.nodes.saturating_add(weight);
        if self.nodes > self.limits.max_nodes {
            let aliased = self.aliased;
            return Err(ReadError::TooManyNodes { span, max: self.limits.max_nodes, aliased });
        }
        Ok(())
    }

    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some((Node { value: Value::Seq(items), .. }, _)) => items.push(node),
            Some((Node { value: Value::Map(entries), .. }, pending)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => entries.push((key, node)),
            },
            Some(_) => unreachable!("only containers are pushed on the stack"),
        }
    }

    fn open(&mut self, value: Value, anchor: usize, start: usize) -> Result<(), ReadError> {
        let span = Span::new(start, self.source.line_end(start));
        if self.stack.len() >= self.limits.max_depth {
            return Err(ReadError::TooDeep { span, max: self.limits.max_depth });
        }
        self.charge(1, span)?;
        self.stack.push((Node { span, value }, None));
        self.open_anchors.push(anchor);
        Ok(())
    }

    fn close(&mut self) {
        // The parser only emits an end event for a container it started.
        let (mut node, _) = self.stack.pop().expect("end event without a start");
        let anchor = self.open_anchors.pop().expect("anchor stack follows the node stack");
        // A container's span is where its first key or item starts (block mappings report their
        // start at the first value), so diagnostics point at something a person can see.
        let first = match &node.value {
            Value::Map(entries) => entries.first().map(|(k, _)| k.span),
            Value::Seq(items) => items.first().map(|n| n.span),
            Value::Scalar { .. } => None,
        };
        if let Some(first) = first
            && first.start < node.span.start
        {
            node.span = Span::new(first.start, self.source.line_end(first.start));
        }
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        self.push_value(node);
    }

    fn scalar(
        &mut self,
        text: String,
        style: TScalarStyle,
        anchor: usize,
        mark: Marker,
    ) -> Result<(), ReadError> {
        let start = self.span_at(mark);
        let style = match style {
            TScalarStyle::Plain => Style::Plain,
            TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => Style::Quoted,
            TScalarStyle::Literal | TScalarStyle::Folded => Style::Block,
        };
        let quotes = if style == Style::Quoted { 2 } else { 0 };
        let wanted = text.chars().count() + quotes;
        let line_end = self.source.line_end(start);
        let end = self.source.text()[start..line_end]
            .char_indices()
            .nth(wanted)
            .map_or(line_end, |(i, _)| start + i);
        let span = Span::new(start, end.max(start));
        self.charge(1, span)?;
        let node = Node { span, value: Value::Scalar { text, style } };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        self.push_value(node);
        Ok(())
    }

    fn alias(&mut self, id: usize, mark: Marker) -> Result<(), ReadError> {
        let start = self.span_at(mark);
        let span = Span::new(start, self.source.line_end(start));
        let Some(target) = self.anchors.get(&id) else {
            return Err(ReadError::Syntax {
                span,
                message: "alias to an unknown anchor".to_owned(),
            });
        };
        // Charge before cloning: the copy is what a billion-laughs document multiplies.
        let weight = target.weight();
        self.aliased = true;
        self.charge(weight, span)?;
        let mut copy = self.anchors[&id].clone();
        copy.span = span;
        self.push_value(copy);
        Ok(())
    }
}

/// Reads `source` as a single YAML document; `Ok(None)` for an empty document.
pub(crate) fn read(source: &Source, limits: Limits) -> Result<Option<Node>, ReadError> {
    let text = source.text();
    if text.len() > limits.max_bytes {
        return Err(ReadError::TooLarge { len: text.len(), max: limits.max_bytes });
    }
    // The parser stops at a NUL as if the text ended there: check the whole text first, so that
    // nothing after such a character goes unread.
    if let Some((at, ch)) = text.char_indices().find(|&(_, c)| !printable(c)) {
        return Err(ReadError::ForbiddenChar { span: Span::new(at, at + ch.len_utf8()), ch });
    }
    let mut builder = Builder {
        source,
        limits,
        stack: Vec::new(),
        anchors: HashMap::new(),
        open_anchors: Vec::new(),
        nodes: 0,
        aliased: false,
        root: None,
        documents: 0,
    };
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, mark) = parser.next_token().map_err(|err| {
            let at = builder.span_at(*err.marker());
            ReadError::Syntax { span: Span::new(at, at + 1), message: err.info().to_owned() }
        })?;
        match event {
            Event::StreamEnd => break,
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
            Event::DocumentStart => {
                builder.documents += 1;
                if builder.documents > 1 {
                    let at = builder.span_at(mark);
                    return Err(ReadError::MultipleDocuments {
                        span: Span::new(at, source.line_end(at)),
                    });
                }
            }
            Event::Alias(id) => builder.alias(id, mark)?,
            Event::Scalar(text, style, anchor, _tag) => {
                builder.scalar(text, style, anchor, mark)?;
            }
            Event::SequenceStart(anchor, _tag) => {
                let at = builder.span_at(mark);
                builder.open(Value::Seq(Vec::new()), anchor, at)?;
            }
            Event::MappingStart(anchor, _tag) => {
                let at = builder.span_at(mark);
                builder.open(Value::Map(Vec::new()), anchor, at)?;
            }
            Event::SequenceEnd | Event::MappingEnd => builder.close(),
        }
    }
    Ok(builder.root)
}

/// Writes `value` as block-style YAML, maps in field order.
///
/// Every string is written double-quoted (with JSON's escapes, which YAML's double-quoted style
/// includes), so none can read back as a number, a boolean or null: `yaml-rust2`'s emitter
/// leaves some such strings plain (`0o17` reads back as 15), so the writer is this function.
pub(crate) fn write<T: serde::Serialize>(value: &T) -> String {
    // The model holds only strings, integers, booleans, lists and string-keyed maps, which
    // always serialize.
    let tree = serde_json::to_value(value).expect("the manifest model serializes");
    let mut out = String::new();
    match &tree {
        serde_json::Value::Object(map) if !map.is_empty() => block(&tree, 0, &mut out),
        other => {
            inline(other, &mut out);
            out.push('\n');
        }
    }
    out
}

/// A non-empty map or list, one entry per line at `indent`.
fn block(value: &serde_json::Value, indent: usize, out: &mut String) {
    use serde_json::Value as V;
    let pad = " ".repeat(indent);
    match value {
        V::Object(map) => {
            for (key, value) in map {
                out.push_str(&pad);
                entry(key, value, indent, out);
            }
        }
        V::Array(items) => {
            for item in items {
                out.push_str(&pad);
                out.push_str("- ");
                match item {
                    V::Object(map) if !map.is_empty() => {
                        // The item's first entry shares the dash's line; the rest line up.
                        let mut entries = map.iter();
                        if let Some((key, value)) = entries.next() {
                            entry(key, value, indent + 2, out);
                        }
                        for (key, value) in entries {
                            out.push_str(&pad);
                            out.push_str("  ");
                            entry(key, value, indent + 2, out);
                        }
                    }
                    V::Array(inner) if !inner.is_empty() => {
                        out.push('\n');
                        block(item, indent + 2, out);
                    }
                    scalar => {
                        inline(scalar, out);
                        out.push('\n');
                    }
                }
            }
        }
        scalar => {
            out.push_str(&pad);
            inline(scalar, out);
            out.push('\n');
        }
    }
}

/// `key: value` for a map entry whose line is already indented to `indent`.
fn entry(key: &str, value: &serde_json::Value, indent: usize, out: &mut String) {
    use serde_json::Value as V;
    write_key(key, out);
    out.push(':');
    match value {
        V::Object(map) if !map.is_empty() => {
            out.push('\n');
            block(value, indent + 2, out);
        }
        V::Array(items) if !items.is_empty() => {
            out.push('\n');
            block(value, indent + 2, out);
        }
        scalar => {
            out.push(' ');
            inline(scalar, out);
            out.push('\n');
        }
    }
}

/// A scalar, or an empty map or list, on the current line.
fn inline(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value as V;
    match value {
        V::Null => out.push_str("null"),
        V::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        V::Number(n) => out.push_str(&n.to_string()),
        V::String(s) => out.push_str(&quoted(s)),
        V::Array(_) => out.push_str("[]"),
        V::Object(_) => out.push_str("{}"),
    }
}

/// A key plain when it is a simple name that YAML reads as that string, quoted otherwise.
fn write_key(key: &str, out: &mut String) {
    let simple = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !matches!(
            key.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if simple { out.push_str(key) } else { out.push_str(&quoted(key)) }
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_str(text: &str, limits: Limits) -> Result<Option<Node>, ReadError> {
        read(&Source::new("t.yaml", text), limits)
    }

    #[test]
    fn keeps_style_and_position() {
        let node = read_str("a: 3.10\nb: '3.10'\n", Limits::default()).unwrap().unwrap();
        let Value::Map(entries) = node.value else { panic!("not a map") };
        let Value::Scalar { style, text } = &entries[0].1.value else { panic!() };
        assert_eq!((text.as_str(), *style), ("3.10", Style::Plain));
        assert_eq!(entries[0].1.span, Span::new(3, 7));
        let Value::Scalar { style, .. } = &entries[1].1.value else { panic!() };
        assert_eq!(*style, Style::Quoted);
        assert_eq!(entries[1].1.span, Span::new(11, 17));
    }

    #[test]
    fn aliases_expand_within_budget() {
        let node = read_str("a: &x [1, 2]\nb: *x\n", Limits::default()).unwrap().unwrap();
        let Value::Map(entries) = node.value else { panic!() };
        assert!(matches!(&entries[1].1.value, Value::Seq(items) if items.len() == 2));
    }

    #[test]
    fn limits_fail_fast() {
        let limits = Limits { max_bytes: 10, ..Limits::default() };
        assert_eq!(
            read_str("a: 12345678901", limits).unwrap_err(),
            ReadError::TooLarge { len: 14, max: 10 }
        );
        let deep = "[".repeat(40) + &"]".repeat(40);
        assert!(matches!(
            read_str(&deep, Limits::default()),
            Err(ReadError::TooDeep { max: 32, .. })
        ));
        assert!(matches!(
            read_str("a: 1\n---\nb: 2\n", Limits::default()),
            Err(ReadError::MultipleDocuments { .. })
        ));
    }
}
