use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Longest identifier accepted, in bytes: long enough for a fully qualified host name.
const MAX_ID_LEN: usize = 253;

/// Checks the identifier alphabet shared by every id type.
///
/// The alphabet (ASCII letters, digits, `.`, `_`, `-`, `:`) covers application codes, host names,
/// `host:port` pairs and IPv4 addresses, and keeps ids safe to print in logs, paths and CSV.
fn validate(kind: &'static str, value: &str) -> Result<(), Error> {
    let reject = |reason| Error::InvalidId { kind, value: value.to_owned(), reason };
    if value.is_empty() {
        return Err(reject("must not be empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(reject("must be at most 253 bytes"));
    }
    if !value.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(reject("must start with an ASCII letter or digit"));
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':')) {
        return Err(reject("may only hold ASCII letters, digits, `.`, `_`, `-` and `:`"));
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        ///
        /// Validated on construction: 1 to 253 bytes of ASCII letters, digits, `.`, `_`, `-` and
        /// `:`, starting with a letter or digit. Serialized as a plain string; deserializing
        /// validates the same way.
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `value` and wraps it.
            ///
            /// # Errors
            /// [`Error::InvalidId`] when `value` breaks the rules above.
            pub fn new(value: impl Into<String>) -> Result<Self, Error> {
                let value = value.into();
                validate($kind, &value)?;
                Ok(Self(value))
            }

            /// The identifier as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self, Error> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(s: &str) -> Result<Self, Error> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            /// Honours width and alignment (`{:<8}`), for tables.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }
    };
}

identifier!(
    /// The code that names an application across the platform (`order-service`), as used by
    /// manifests and by dependency-ordered deployment.
    AppCode,
    "application code"
);

identifier!(
    /// A host that a release is deployed to (`host-07`, `10.0.3.7`, `web-3.example.com`).
    HostId,
    "host id"
);

identifier!(
    /// A build or deploy worker that the scheduler can place a job on.
    WorkerId,
    "worker id"
);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<(), &str>) {
        let got = AppCode::new(input);
        match (got, expected) {
            (Ok(code), Ok(())) => assert_eq!(code.as_str(), input),
            (Err(Error::InvalidId { reason, value, kind }), Err(want)) => {
                assert_eq!(reason, want, "input {input:?}");
                assert_eq!(value, input);
                assert_eq!(kind, "application code");
            }
            (got, want) => panic!("input {input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn validation_table() {
        check("order-service", Ok(()));
        check("db", Ok(()));
        check("10.0.0.7:8080", Ok(()));
        check("a_b.c", Ok(()));
        check("", Err("must not be empty"));
        check("-leading", Err("must start with an ASCII letter or digit"));
        check("has space", Err("may only hold ASCII letters, digits, `.`, `_`, `-` and `:`"));
        check("naïve", Err("may only hold ASCII letters, digits, `.`, `_`, `-` and `:`"));
        check(&"a".repeat(253), Ok(()));
        check(&"a".repeat(254), Err("must be at most 253 bytes"));
    }

    #[test]
    fn serde_validates_on_the_way_in() {
        let host: HostId = serde_yaml::from_str("web-1").unwrap();
        assert_eq!(host.to_string(), "web-1");
        assert_eq!(serde_yaml::to_string(&host).unwrap().trim(), "web-1");
        let err = serde_yaml::from_str::<HostId>("'web 1'").unwrap_err();
        assert!(err.to_string().contains("invalid host id `web 1`"), "{err}");
    }

    #[test]
    fn error_message_names_kind_and_value() {
        let err = WorkerId::new("").unwrap_err();
        assert_eq!(err.to_string(), "invalid worker id ``: must not be empty");
    }

    mod proptests {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn valid_ids_round_trip(s in "[a-zA-Z0-9][a-zA-Z0-9._:-]{0,60}") {
                let id = HostId::new(s.clone()).unwrap();
                prop_assert_eq!(id.as_str(), s.as_str());
                let back: HostId = id.to_string().parse().unwrap();
                prop_assert_eq!(back, id);
            }

            #[test]
            fn arbitrary_text_never_panics(s in ".*") {
                let _ = AppCode::new(s);
            }
        }
    }
}
