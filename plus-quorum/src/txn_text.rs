//! A transaction written as etcdctl's `txn` reads one: compares, a blank line, the operations
//! when they all hold, a blank line, the operations otherwise.
//!
//! ```text
//! value("app/version") = "1.2"
//! mod("app/lock") = "0"
//!
//! put app/version "1.3"
//! del app/lock
//!
//! get app/version
//! ```
//!
//! Compares, with etcdctl's names: `value("K") = "V"`; `mod("K") = "N"` (the key's version, its
//! last write's revision; `"0"`: absent); `version("K") = "0"` (absent) or `version("K") > "0"`
//! (exists); `lease("K") = "ID"` (`"0"`: on no lease); and `exists("K")`, `absent("K")`. Only
//! what the store can compare is accepted (equality, and existence): `mod("K") < "5"` is an
//! error, never a guess. Operations: `put KEY VALUE [--lease ID]`, `del KEY`, `get KEY
//! [--prefix] [--limit N]`. Words may be double-quoted (`\"`, `\\`, `\n`, `\t` inside); a line
//! starting with `#` is a comment.

use std::str::FromStr;

use crate::txn::{Compare, Range, Txn, TxnOp};
use crate::types::Expect;

/// Why a transaction's text could not be read: the line (from 1) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct TxnSyntaxError {
    /// The line, counted from 1.
    pub line: usize,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl FromStr for Txn {
    type Err = TxnSyntaxError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut txn = Txn::default();
        let mut section = 0;
        let mut in_section = false;
        for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
            if line.starts_with('#') {
                continue;
            }
            if line.is_empty() {
                if in_section {
                    section += 1;
                    in_section = false;
                }
                continue;
            }
            in_section = true;
            let fail = |message: String| TxnSyntaxError { line: number, message };
            match section {
                0 => txn.when.push(compare(line).map_err(fail)?),
                1 => txn.then.push(operation(line).map_err(fail)?),
                2 => txn.otherwise.push(operation(line).map_err(fail)?),
                _ => {
                    return Err(fail(
                        "a fourth section: a transaction is compares, then-operations and \
                         else-operations, separated by one blank line each"
                            .to_owned(),
                    ));
                }
            }
        }
        Ok(txn)
    }
}

/// Splits a line into words: spaces separate them, double quotes keep them together.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("a quote that is never closed: {line}")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => word.push('\n'),
                        Some('t') => word.push('\t'),
                        Some(e @ ('"' | '\\')) => word.push(e),
                        other => {
                            return Err(format!(
                                "an unknown escape \\{} (known: \\\" \\\\ \\n \\t)",
                                other.map(String::from).unwrap_or_default()
                            ));
                        }
                    },
                    Some(other) => word.push(other),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    Ok(words)
}

/// `func("KEY") OP "VALUE"`, or `exists("KEY")` / `absent("KEY")`.
fn compare(line: &str) -> Result<Compare, String> {
    let (func, rest) = line
        .split_once('(')
        .ok_or_else(|| format!("`{line}` is not a compare such as value(\"KEY\") = \"VALUE\""))?;
    let (key, rest) = rest
        .rsplit_once(')')
        .ok_or_else(|| format!("`{line}`: the key's parenthesis is never closed"))?;
    let key = match words(key)?.as_slice() {
        [key] => key.clone(),
        _ => return Err(format!("`{line}`: one key between the parentheses")),
    };
    let rest = words(rest)?;
    let (op, value) = match rest.as_slice() {
        [] => ("", String::new()),
        [op, value] => (op.as_str(), value.clone()),
        _ => return Err(format!("`{line}`: a compare ends with an operator and one value")),
    };
    let number = |what: &str| {
        value
            .parse::<u64>()
            .map_err(|_| format!("`{line}`: {what} compares with a number, not `{value}`"))
    };
    let expect = match (func.trim(), op) {
        ("exists", "") => Expect::Exists,
        ("absent", "") => Expect::Absent,
        ("value", "=") => Expect::Value(value.clone().into()),
        ("mod", "=") => match number("mod")? {
            0 => Expect::Absent,
            version => Expect::Version(version),
        },
        ("version", "=") if number("version")? == 0 => Expect::Absent,
        ("version", ">" | "!=") if number("version")? == 0 => Expect::Exists,
        ("lease", "=") => Expect::Lease(Some(number("lease")?).filter(|&l| l != 0)),
        ("value" | "mod" | "version" | "lease", op) => {
            return Err(format!(
                "`{line}`: the store compares {func} with = only (version with = \"0\" or > \"0\"), not `{op}`"
            ));
        }
        (other, _) => {
            return Err(format!(
                "`{line}`: no compare `{other}` (known: value, mod, version, lease, exists, absent)"
            ));
        }
    };
    Ok(Compare { key, expect })
}

/// `put KEY VALUE [--lease ID]`, `del KEY`, `get KEY [--prefix] [--limit N]`.
fn operation(line: &str) -> Result<TxnOp, String> {
    let words = words(line)?;
    let mut args = words.iter().map(String::as_str);
    let verb = args.next().unwrap_or_default();
    let rest: Vec<&str> = args.collect();
    let bad = || {
        format!(
            "`{line}` is not an operation (put KEY VALUE [--lease ID], del KEY, get KEY [--prefix] [--limit N])"
        )
    };
    Ok(match (verb, rest.as_slice()) {
        ("put", [key, value]) => {
            TxnOp::Set { key: (*key).to_owned(), value: value.to_string().into(), lease: None }
        }
        ("put", [key, value, "--lease", id]) => TxnOp::Set {
            key: (*key).to_owned(),
            value: value.to_string().into(),
            lease: Some(
                id.parse().map_err(|_| format!("`{line}`: a lease is a number, not `{id}`"))?,
            ),
        },
        ("del", [key]) => TxnOp::Delete { key: (*key).to_owned() },
        ("get", [key]) => TxnOp::Get((*key).to_owned()),
        ("get", [key, flags @ ..]) => {
            let mut range = Range::between(*key, format!("{key}\0"));
            let mut flags = flags.iter();
            while let Some(flag) = flags.next() {
                match *flag {
                    "--prefix" => range = Range { keys: Range::prefix(*key).keys, ..range },
                    "--limit" => {
                        let n = flags.next().ok_or_else(bad)?;
                        let n = n
                            .parse()
                            .map_err(|_| format!("`{line}`: a limit is a number, not `{n}`"))?;
                        range = range.limit(n);
                    }
                    _ => return Err(bad()),
                }
            }
            TxnOp::Range(range)
        }
        _ => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcdctls_example_reads_as_its_transaction() {
        let txn: Txn = r#"
            value("app/version") = "1.2"
            mod("app/lock") = "0"
            version("app/owner") > "0"
            lease("app/owner") = "42"

            put app/version "1.3 \"final\""
            put app/owner me --lease 42
            del app/lock

            # what it found instead
            get app/version
            get app/ --prefix --limit 2
        "#
        .parse()
        .unwrap();
        assert_eq!(
            txn.when,
            vec![
                Compare::new("app/version", Expect::Value("1.2".into())),
                Compare::new("app/lock", Expect::Absent),
                Compare::new("app/owner", Expect::Exists),
                Compare::new("app/owner", Expect::Lease(Some(42))),
            ]
        );
        assert_eq!(
            txn.then,
            vec![
                TxnOp::Set {
                    key: "app/version".into(),
                    value: "1.3 \"final\"".into(),
                    lease: None
                },
                TxnOp::Set { key: "app/owner".into(), value: "me".into(), lease: Some(42) },
                TxnOp::Delete { key: "app/lock".into() },
            ]
        );
        assert_eq!(
            txn.otherwise,
            vec![TxnOp::Get("app/version".into()), TxnOp::Range(Range::prefix("app/").limit(2))]
        );
    }

    #[test]
    fn what_the_store_cannot_compare_is_refused_with_its_line() {
        let cases = [
            ("mod(\"k\") < \"5\"", 1, "with = only"),
            ("\nvalue(\"k\") = \"v\"\n\nfrob k", 4, "not an operation"),
            ("created(\"k\") = \"1\"", 1, "no compare `created`"),
            ("value(\"k\") = \"unclosed", 1, "never closed"),
            ("mod(\"k\") = \"x\"", 1, "with a number"),
            ("exists(\"k\")\n\nput k v\n\nget k\n\nget k", 7, "a fourth section"),
        ];
        for (text, line, says) in cases {
            let err = text.parse::<Txn>().unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.to_string().contains(says), "{text:?}: {err}");
        }
    }

    #[test]
    fn an_empty_text_is_an_empty_transaction() {
        assert_eq!("".parse::<Txn>().unwrap(), Txn::default());
    }
}
