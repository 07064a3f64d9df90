use std::path::PathBuf;

use crate::diagnostic::Report;

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file was read and holds one or more errors; the report renders them all.
    #[error("{0}")]
    Invalid(Box<Report>),
}

impl std::error::Error for Report {}

impl From<Report> for ManifestError {
    fn from(report: Report) -> Self {
        Self::Invalid(Box::new(report))
    }
}
