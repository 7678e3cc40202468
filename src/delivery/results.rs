//! What a call answers: one [`RowResult`] per (row, matching mapping), its [`RowStatus`], and
//! [`Counts`] by status; and what it is given, one [`Input`] per row.

use crate::issue::Issue;
use crate::mapping::Row;

/// What happened to one (row, mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum RowStatus {
    /// Accepted and waiting for its batch: never in an answer (every call settles each one).
    Pending,
    Delivered,
    Rejected,
    Failed,
    Skipped,
}

/// One result per (row, matching mapping), or one `Skipped` (or row-level `Rejected`) result with
/// no mapping for a row no mapping matched (or that could not be read).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct RowResult {
    pub row_index: u32,
    pub row_id: String,
    /// Empty for a row no mapping matched and for a row that could not be read.
    pub mapping_id: String,
    pub status: RowStatus,
    pub message_id: Option<String>,
    pub issues: Vec<Issue>,
    /// For `Failed`: the last upstream HTTP status, if any.
    pub upstream_status: Option<u16>,
    /// For `Delivered` and `Failed`: the attempts made for the batch that settled it.
    pub attempts: u32,
    /// For `Failed`: whether submitting the row again may succeed.
    pub retryable: bool,
    /// For `Failed` by the destination's rate limit: how long to wait before submitting again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<std::time::Duration>,
}

/// Counts of results by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Counts {
    pub delivered: u32,
    pub rejected: u32,
    pub failed: u32,
    pub skipped: u32,
}

impl Counts {
    pub(crate) fn of(results: &[RowResult]) -> Counts {
        let mut c = Counts::default();
        for r in results {
            c.add(r.status);
        }
        c
    }

    pub(crate) fn add(&mut self, s: RowStatus) {
        match s {
            RowStatus::Delivered => self.delivered += 1,
            RowStatus::Rejected => self.rejected += 1,
            // A pending result never reaches an answer; were one to, it is not known to be
            // delivered, so it counts as failed (and is answered FAILED, retryable).
            RowStatus::Failed | RowStatus::Pending => self.failed += 1,
            RowStatus::Skipped => self.skipped += 1,
        }
    }
}

/// One input row: its id as given, and the row or why it could not be read.
#[derive(Debug)]
pub(crate) struct Input {
    pub id: String,
    pub row: Result<Row, Issue>,
}
