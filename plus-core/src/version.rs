use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// A version exactly as a person wrote it: `8`, `3.3.3`, `1.20`, `v2.4.0-rc1`, `2024-06-01.3`.
///
/// Versions are opaque on purpose: tools and applications number their releases in too many ways
/// for one ordering to be right, and `plus` only ever compares versions for equality (is this host
/// already on the target version? do two manifests need the same tools?). The text is kept as
/// written, so `1.20` never turns into `1.2`.
///
/// Validated on construction: not empty, at most 128 bytes, no whitespace or control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Version(String);

impl Version {
    /// Validates `value` and wraps it.
    ///
    /// # Errors
    /// [`Error::InvalidVersion`] when `value` is empty, longer than 128 bytes, or holds
    /// whitespace or control characters.
    pub fn new(value: impl Into<String>) -> Result<Self, Error> {
        let value = value.into();
        let reject = |reason| Error::InvalidVersion { value: value.clone(), reason };
        if value.is_empty() {
            return Err(reject("must not be empty"));
        }
        if value.len() > 128 {
            return Err(reject("must be at most 128 bytes"));
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(reject("must not contain whitespace or control characters"));
        }
        Ok(Self(value))
    }

    /// The version as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Version {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for Version {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl From<Version> for String {
    fn from(v: Version) -> String {
        v.0
    }
}

impl AsRef<str> for Version {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_text_as_written() {
        for text in ["8", "3.3.3", "1.20", "v2.4.0-rc1", "2024-06-01.3"] {
            assert_eq!(Version::new(text).unwrap().as_str(), text);
        }
    }

    #[test]
    fn rejects_table() {
        for (text, reason) in [
            ("", "must not be empty"),
            ("1 .2", "must not contain whitespace or control characters"),
            ("1\n", "must not contain whitespace or control characters"),
        ] {
            assert_eq!(
                Version::new(text),
                Err(Error::InvalidVersion { value: text.to_owned(), reason }),
            );
        }
        assert!(Version::new("1".repeat(129)).is_err());
    }
}
