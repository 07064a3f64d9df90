//! A failure reported across a seam: what failed, in words, and the error beneath it when
//! there is one.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// A failure at a seam a host implements or a library beneath reports: what failed, in words,
/// and the error beneath it ([`Error::source`]) when there is one. An application executor's
/// deploy that failed (plus-rollout), a store reached through another client library or a
/// backup that could not be moved (plus-quorum). A `String` or `&str` converts into one, so
/// `?` works on string errors.
///
/// It is serialized as its text alone (a client gets the words of a node's failure, not the
/// node's own error value), and two are equal when their texts are.
///
/// ```
/// use std::error::Error;
/// use plus_core::Failure;
///
/// let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left");
/// let err = Failure::with_source("cannot write the backup", io);
/// assert_eq!(err.to_string(), "cannot write the backup: no space left");
/// assert!(err.source().unwrap().downcast_ref::<std::io::Error>().is_some());
/// let plain: Failure = "disk full".into();
/// assert_eq!(plain.message(), "disk full");
/// ```
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(from = "String", into = "String")]
pub struct Failure {
    message: String,
    source: Option<Arc<dyn Error + Send + Sync>>,
}

impl Failure {
    /// A failure that is only a message (nothing beneath it).
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), source: None }
    }

    /// `message`, caused by `source`: shown as `message: source`, and kept as the source.
    pub fn with_source(
        message: impl Into<String>,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        Self { message: message.into(), source: Some(Arc::new(source)) }
    }

    /// What failed, without the error beneath it.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Failure {
    /// The message and, after a colon, the error beneath it: a caller that prints only this
    /// error still sees why.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {source}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failure")
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl Error for Failure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

impl PartialEq for Failure {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Failure {}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl From<Failure> for String {
    fn from(error: Failure) -> Self {
        error.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_crosses_the_wire_as_its_text_and_keeps_its_source_locally() {
        let io = std::io::Error::other("disk gone");
        let err = Failure::with_source("cannot write the backup", io);
        let json = serde_yaml::to_string(&err).unwrap();
        assert_eq!(json.trim(), "'cannot write the backup: disk gone'");
        let back: Failure = serde_yaml::from_str(&json).unwrap();
        assert_eq!(back, err);
        assert!(back.source().is_none() && err.source().is_some());
        assert_eq!(err.message(), "cannot write the backup");
    }
}
