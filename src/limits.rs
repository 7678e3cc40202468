//! What a request may carry and an answer may hold, in one place: rows per call
//! ([`RequestLimits`], checked by the handlers before any row is read), the answer's size, and
//! per-row size limits, shared by every RPC that takes rows: TestMapping (via
//! `grpc::convert::row`) and the delivery path (SubmitRows, StreamRows), which must convert
//! rows through the same function. A row over a limit is that row's `ROW_TOO_LARGE` issue,
//! never a failed call; the message names the limit and its flag. (Limits of the domain stay
//! with it: a mapping document's size in `mapping/`, an event's in `spec/accept.rs`, a batch's in
//! `sender/batch.rs`.)

use std::io;

use crate::issue::{Issue, IssueCode, pointer};
use crate::json::Columns;

/// The largest row (its columns JSON) by default: 512 KiB.
pub(crate) const DEFAULT_MAX_ROW_BYTES: usize = 512 * 1024;
/// The largest single column value (as JSON) by default: 128 KiB.
pub(crate) const DEFAULT_MAX_VALUE_BYTES: usize = 128 * 1024;

/// The largest row-call response, encoded: 64 KiB under the 4 MiB gRPC clients take by default.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;

/// The largest event TestMapping echoes (twice the Tracking API's limit, so an event rejected as
/// too large can still be seen when it is close); a larger one is left out, its size exact.
pub const MAX_ECHOED_EVENT_BYTES: usize = 64 * 1024;

/// The longest row id (bytes): it is echoed in every result of the row.
pub const MAX_ROW_ID_BYTES: usize = 256;

/// What the handlers check of a request before any row is read (tonic bounds the message size).
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// The most rows one SubmitRows request, or one StreamRows chunk, may carry
    /// (`--max-submit-rows`).
    pub max_rows: usize,
    /// The most rows one TestMapping request may carry (`--max-test-rows`).
    pub max_test_rows: usize,
    /// Row and column value sizes (`grpc::convert::row`).
    pub rows: RowLimits,
}

/// How large one row and one of its column values may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowLimits {
    /// The most bytes of a row's `columns_json` (`--max-row-bytes`).
    pub max_row_bytes: usize,
    /// The most bytes of one column value written as JSON (`--max-value-bytes`).
    pub max_value_bytes: usize,
}

impl Default for RowLimits {
    fn default() -> RowLimits {
        RowLimits {
            max_row_bytes: DEFAULT_MAX_ROW_BYTES,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

impl RowLimits {
    /// Checks the size of a row's columns JSON, before it is parsed.
    pub(crate) fn check_row_bytes(&self, row_bytes: usize) -> Result<(), Issue> {
        if row_bytes > self.max_row_bytes {
            return Err(Issue::new(
                IssueCode::RowTooLarge,
                "/columns_json",
                format!(
                    "the row is {row_bytes} bytes; the limit is {} (--max-row-bytes)",
                    self.max_row_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Checks each column value of a parsed row, whose JSON was `row_bytes` long. Free for rows
    /// no larger than the value limit (no value can exceed it then).
    pub(crate) fn check_values(&self, row_bytes: usize, columns: &Columns) -> Result<(), Issue> {
        if row_bytes <= self.max_value_bytes {
            return Ok(());
        }
        for (name, value) in columns {
            let mut size = ByteCount(0);
            // Writing into a counter cannot fail.
            serde_json::to_writer(&mut size, &value).ok();
            if size.0 > self.max_value_bytes {
                return Err(Issue::new(
                    IssueCode::RowTooLarge,
                    pointer("/columns", name),
                    format!(
                        "column {name:?} is {} bytes as JSON; the limit is {} (--max-value-bytes)",
                        size.0, self.max_value_bytes
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Counts what is written.
struct ByteCount(usize);

impl io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(json: &str) -> Columns {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_are_512_and_128_kib() {
        let l = RowLimits::default();
        assert_eq!((l.max_row_bytes, l.max_value_bytes), (524_288, 131_072));
    }

    #[test]
    fn a_row_over_the_limit_names_it() {
        let l = RowLimits {
            max_row_bytes: 10,
            max_value_bytes: 5,
        };
        assert!(l.check_row_bytes(10).is_ok());
        let issue = l.check_row_bytes(11).unwrap_err();
        assert_eq!(issue.code, IssueCode::RowTooLarge);
        assert_eq!(issue.pointer, "/columns_json");
        assert!(
            issue.message.contains("--max-row-bytes"),
            "{}",
            issue.message
        );
    }

    #[test]
    fn a_value_over_the_limit_points_at_its_column() {
        let l = RowLimits {
            max_row_bytes: 1000,
            max_value_bytes: 6,
        };
        // "abcd" is 6 bytes as JSON: at the limit.
        let ok = r#"{"a": "abcd", "b/c": 12345}"#;
        assert!(l.check_values(ok.len(), &columns(ok)).is_ok());
        let bad = r#"{"a": "abcd", "b/c": "abcde"}"#;
        let issue = l.check_values(bad.len(), &columns(bad)).unwrap_err();
        assert_eq!(issue.code, IssueCode::RowTooLarge);
        assert_eq!(issue.pointer, "/columns/b~1c");
        assert!(
            issue.message.contains("--max-value-bytes"),
            "{}",
            issue.message
        );
        // A row no larger than the value limit is not walked.
        assert!(l.check_values(6, &columns(bad)).is_ok());
    }
}
