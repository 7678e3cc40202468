//! `segment-connections test-mapping --mapping FILE --row FILE`: render one row offline.

use std::path::Path;

use crate::mapping::{Identity, Mapping, MappingDoc, Row, TestResult};

/// A usage, I/O or file-shape error (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The file is not a mapping document (the violation's message says why).
    #[error("{path}: {reason}")]
    Mapping { path: String, reason: String },
    #[error("{path}: not a row file: {source}")]
    Row {
        path: String,
        source: serde_json::Error,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|source| FileError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Reads both files and renders the row. `Ok` holds the result to print (and its exit code).
pub fn run(mapping: &Path, row: &Path) -> Result<TestResult, FileError> {
    let doc = MappingDoc::parse(&read(mapping)?).map_err(|v| FileError::Mapping {
        path: mapping.display().to_string(),
        reason: v.message,
    })?;
    let row = Row::from_json(&read(row)?).map_err(|source| FileError::Row {
        path: row.display().to_string(),
        source,
    })?;
    let identity = Identity::offline(doc.name.as_deref().unwrap_or_default());
    Ok(match Mapping::compile_authored(&doc, identity) {
        Ok(m) => m.test(&row),
        Err(violations) => TestResult::invalid_mapping(&violations),
    })
}

/// The warnings of a result as text lines on stderr (`warning: POINTER: MESSAGE`), beside the
/// JSON on stdout, which holds them too.
pub fn print_warnings(r: &TestResult) {
    for w in &r.warnings {
        eprintln!("warning: {}: {}", w.pointer, w.message);
    }
}
