//! proto ⇄ domain at the edge. Requests are destructured field by field (a new proto field
//! fails to compile here until it is handled); domain → proto are `to_proto_*` functions.

use serde_json::Value;

use super::proto;
use crate::delivery::{Counts, Input, RowResult, RowStatus};
use crate::error::{Error, FieldViolation};
use crate::issue::{Issue, IssueCode};
use crate::json::Columns;
use crate::limits::{MAX_ECHOED_EVENT_BYTES, MAX_RESPONSE_BYTES, MAX_ROW_ID_BYTES, RowLimits};
use crate::mapping::{self, Op, Row, TestResult, Warning, WarningCode};
use crate::store::{
    Destination, DestinationPatch, MappingContent, MappingRecord, Name, NewDestination, RateLimit,
    Region, WriteKey,
};

/// Collects violations so a request reports all of its bad fields at once.
#[derive(Default)]
struct Violations(Vec<FieldViolation>);

impl Violations {
    fn check<T, E: Into<String>>(&mut self, field: &str, r: Result<T, E>) -> Option<T> {
        r.map_err(|e| self.0.push(FieldViolation::new(field, e)))
            .ok()
    }

    fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, Error> {
        match (self.0.is_empty(), value()) {
            (true, Some(v)) => Ok(v),
            (_, _) => Err(Error::InvalidRequest(self.0)),
        }
    }
}

/// An id field: present and short.
pub(super) fn id(field: &str, id: String) -> Result<String, Error> {
    check_id(id).map_err(|e| Error::invalid(field, e))
}

fn check_id(id: String) -> Result<String, &'static str> {
    if id.is_empty() {
        return Err("is required");
    }
    if id.len() > 200 {
        return Err("is longer than 200 bytes");
    }
    Ok(id)
}

/// A version a caller read: versions start at 1.
fn version(v: u64) -> Result<u64, &'static str> {
    if v == 0 {
        Err("is required (the version read)")
    } else {
        Ok(v)
    }
}

// === Destinations ===

impl TryFrom<proto::CreateDestinationRequest> for NewDestination {
    type Error = Error;

    fn try_from(req: proto::CreateDestinationRequest) -> Result<NewDestination, Error> {
        let proto::CreateDestinationRequest {
            name,
            region,
            write_key,
            enabled,
            rate_limit,
        } = req;
        let mut v = Violations::default();
        let name = v.check("name", Name::parse(name));
        let region = v.check("region", Region::parse(&region));
        let write_key = v.check("write_key", WriteKey::parse(write_key));
        let rate_limit = v.check("rate_limit", RateLimit::parse(rate_limit.unwrap_or(0)));
        v.finish(|| {
            Some(NewDestination {
                name: name?,
                region: region?,
                write_key: write_key?,
                enabled: enabled.unwrap_or(true),
                rate_limit: rate_limit?,
            })
        })
    }
}

/// An update: the id, the version read, and the changes.
pub(super) struct DestinationUpdate {
    pub id: String,
    pub version: u64,
    pub patch: DestinationPatch,
}

impl TryFrom<proto::UpdateDestinationRequest> for DestinationUpdate {
    type Error = Error;

    fn try_from(req: proto::UpdateDestinationRequest) -> Result<DestinationUpdate, Error> {
        let proto::UpdateDestinationRequest {
            id: given_id,
            version: given_version,
            name,
            region,
            write_key,
            enabled,
            rate_limit,
        } = req;
        let mut v = Violations::default();
        let id = v.check("id", check_id(given_id));
        let version = v.check("version", version(given_version));
        let name = name
            .and_then(|n| v.check("name", Name::parse(n)).map(Some))
            .flatten();
        let region = region
            .and_then(|r| v.check("region", Region::parse(&r)).map(Some))
            .flatten();
        let write_key = write_key
            .and_then(|k| v.check("write_key", WriteKey::parse(k)).map(Some))
            .flatten();
        let rate_limit = rate_limit
            .and_then(|l| v.check("rate_limit", RateLimit::parse(l)).map(Some))
            .flatten();
        v.finish(|| {
            Some(DestinationUpdate {
                id: id?,
                version: version?,
                patch: DestinationPatch {
                    name,
                    region,
                    write_key,
                    enabled,
                    rate_limit,
                },
            })
        })
    }
}

pub(crate) fn to_proto_destination(d: Destination) -> proto::Destination {
    let Destination {
        id,
        name,
        region,
        write_key_fingerprint,
        enabled,
        version,
        rate_limit,
    } = d;
    proto::Destination {
        id,
        name,
        region: region.as_str().to_owned(),
        write_key_fingerprint,
        enabled,
        version,
        rate_limit: rate_limit.get(),
    }
}

// === Mappings ===

/// A mapping document for registration (`mapping::register`).
pub(super) fn mapping_content(json: String) -> Result<MappingContent, Error> {
    mapping::register(json).map_err(Error::InvalidMapping)
}

/// A create: the destination and the validated document.
pub(super) struct NewMapping {
    pub destination_id: String,
    pub content: MappingContent,
}

impl TryFrom<proto::CreateMappingRequest> for NewMapping {
    type Error = Error;

    fn try_from(req: proto::CreateMappingRequest) -> Result<NewMapping, Error> {
        let proto::CreateMappingRequest {
            destination_id,
            mapping_json,
        } = req;
        Ok(NewMapping {
            destination_id: id("destination_id", destination_id)?,
            content: mapping_content(mapping_json)?,
        })
    }
}

/// An update: the id, the version read, and the validated new document.
pub(super) struct MappingUpdate {
    pub id: String,
    pub version: u64,
    pub content: MappingContent,
}

impl TryFrom<proto::UpdateMappingRequest> for MappingUpdate {
    type Error = Error;

    fn try_from(req: proto::UpdateMappingRequest) -> Result<MappingUpdate, Error> {
        let proto::UpdateMappingRequest {
            id: given_id,
            version: given_version,
            mapping_json,
        } = req;
        let id = id("id", given_id)?;
        let version = version(given_version).map_err(|e| Error::invalid("version", e))?;
        Ok(MappingUpdate {
            id,
            version,
            content: mapping_content(mapping_json)?,
        })
    }
}

pub(crate) fn to_proto_mapping(m: MappingRecord) -> proto::Mapping {
    let MappingRecord {
        id,
        destination_id,
        name,
        model,
        enabled,
        version,
        document,
    } = m;
    proto::Mapping {
        id,
        destination_id,
        name,
        model,
        enabled,
        version,
        mapping_json: document,
    }
}

// === Rows and results ===

/// A row from the wire; a malformed one is an `INVALID_ROW` issue for that row alone.
impl TryFrom<proto::Row> for Row {
    type Error = Issue;

    fn try_from(row: proto::Row) -> Result<Row, Issue> {
        let proto::Row {
            id,
            op,
            columns_json,
            message_id,
        } = row;
        let op = match proto::Op::try_from(op) {
            Ok(proto::Op::Added) => Op::Added,
            Ok(proto::Op::Updated) => Op::Updated,
            Ok(proto::Op::Deleted) => Op::Deleted,
            Ok(proto::Op::Unspecified) => {
                return Err(Issue::new(
                    IssueCode::InvalidRow,
                    "/op",
                    "is required (ADDED, UPDATED or DELETED)",
                ));
            }
            Err(_) => {
                return Err(Issue::new(
                    IssueCode::InvalidRow,
                    "/op",
                    format!("is unknown op {op}; expected ADDED (1), UPDATED (2) or DELETED (3)"),
                ));
            }
        };
        if id.len() > MAX_ROW_ID_BYTES {
            return Err(Issue::new(
                IssueCode::InvalidRow,
                "/id",
                format!("is {} bytes; at most {MAX_ROW_ID_BYTES}", id.len()),
            ));
        }
        let columns: Columns = crate::json::parse_columns(&columns_json).map_err(|e| {
            Issue::new(
                IssueCode::InvalidRow,
                "/columns_json",
                format!("is not a JSON object: {e}"),
            )
        })?;
        let id = (!id.is_empty()).then_some(id);
        Ok(Row::new(id, op, columns, message_id))
    }
}

/// A row from the wire, within the size limits: every RPC that takes rows converts them here
/// (TestMapping and the delivery path). Over a limit, or malformed: that row's issue.
pub(crate) fn row(row: proto::Row, limits: &RowLimits) -> Result<Row, Issue> {
    let row_bytes = row.columns_json.len();
    limits.check_row_bytes(row_bytes)?;
    let row = Row::try_from(row)?;
    limits.check_values(row_bytes, &row.columns)?;
    Ok(row)
}

/// The result for a row that could not be read.
pub(super) fn invalid_row(issue: Issue) -> TestResult {
    TestResult::rejected(vec![issue])
}

pub(crate) fn to_proto_issue_code(code: IssueCode) -> proto::IssueCode {
    match code {
        IssueCode::InvalidMapping => proto::IssueCode::InvalidMapping,
        IssueCode::InvalidRow => proto::IssueCode::InvalidRow,
        IssueCode::RowTooLarge => proto::IssueCode::RowTooLarge,
        IssueCode::MissingIdentity => proto::IssueCode::MissingIdentity,
        IssueCode::RequiredField => proto::IssueCode::RequiredField,
        IssueCode::TypeMismatch => proto::IssueCode::TypeMismatch,
        IssueCode::EventTooLarge => proto::IssueCode::EventTooLarge,
        IssueCode::InvalidTimestamp => proto::IssueCode::InvalidTimestamp,
        IssueCode::MessageIdTooLong => proto::IssueCode::MessageIdTooLong,
        IssueCode::RenderLimit => proto::IssueCode::RenderLimit,
        IssueCode::DuplicateMessageId => proto::IssueCode::DuplicateMessageId,
        IssueCode::UpstreamRejected => proto::IssueCode::UpstreamRejected,
        IssueCode::UpstreamUnavailable => proto::IssueCode::UpstreamUnavailable,
        IssueCode::RetriesExhausted => proto::IssueCode::RetriesExhausted,
        IssueCode::Deadline => proto::IssueCode::Deadline,
        IssueCode::ShuttingDown => proto::IssueCode::ShuttingDown,
        IssueCode::UpstreamNotAllowed => proto::IssueCode::UpstreamNotAllowed,
        IssueCode::DuplicateRecordId => proto::IssueCode::DuplicateRecordId,
    }
}

/// The domain code of a proto issue code; `None` for `UNSPECIFIED` or a code this build does
/// not know.
pub(crate) fn issue_code_from_proto(code: i32) -> Option<IssueCode> {
    Some(match proto::IssueCode::try_from(code).ok()? {
        proto::IssueCode::Unspecified => return None,
        proto::IssueCode::InvalidMapping => IssueCode::InvalidMapping,
        proto::IssueCode::InvalidRow => IssueCode::InvalidRow,
        proto::IssueCode::RowTooLarge => IssueCode::RowTooLarge,
        proto::IssueCode::MissingIdentity => IssueCode::MissingIdentity,
        proto::IssueCode::RequiredField => IssueCode::RequiredField,
        proto::IssueCode::TypeMismatch => IssueCode::TypeMismatch,
        proto::IssueCode::EventTooLarge => IssueCode::EventTooLarge,
        proto::IssueCode::InvalidTimestamp => IssueCode::InvalidTimestamp,
        proto::IssueCode::MessageIdTooLong => IssueCode::MessageIdTooLong,
        proto::IssueCode::RenderLimit => IssueCode::RenderLimit,
        proto::IssueCode::DuplicateMessageId => IssueCode::DuplicateMessageId,
        proto::IssueCode::UpstreamRejected => IssueCode::UpstreamRejected,
        proto::IssueCode::UpstreamUnavailable => IssueCode::UpstreamUnavailable,
        proto::IssueCode::RetriesExhausted => IssueCode::RetriesExhausted,
        proto::IssueCode::Deadline => IssueCode::Deadline,
        proto::IssueCode::ShuttingDown => IssueCode::ShuttingDown,
        proto::IssueCode::UpstreamNotAllowed => IssueCode::UpstreamNotAllowed,
        proto::IssueCode::DuplicateRecordId => IssueCode::DuplicateRecordId,
    })
}

pub(crate) fn to_proto_issue(issue: Issue) -> proto::Issue {
    let Issue {
        code,
        pointer,
        message,
    } = issue;
    proto::Issue {
        code: to_proto_issue_code(code).into(),
        pointer,
        message,
    }
}

/// A TestMapping response within [`MAX_RESPONSE_BYTES`]: when the results would pass it, their
/// events are left out from the last row back until they fit.
pub(super) fn test_response(results: Vec<proto::TestRowResult>) -> proto::TestMappingResponse {
    bounded_test_response(results, MAX_RESPONSE_BYTES)
}

fn bounded_test_response(
    mut results: Vec<proto::TestRowResult>,
    limit: usize,
) -> proto::TestMappingResponse {
    use prost::Message as _;
    let field = |n: usize| 1 + prost::length_delimiter_len(n) + n;
    let mut size: usize = results.iter().map(|r| field(r.encoded_len())).sum();
    for r in results.iter_mut().rev() {
        if size <= limit {
            break;
        }
        if r.event_json.is_some() {
            let before = field(r.encoded_len());
            r.event_json = None;
            r.event_omitted = true;
            size = size - before + field(r.encoded_len());
        }
    }
    // Still over: the warnings go too, from the last rows back.
    for r in results.iter_mut().rev() {
        if size <= limit {
            break;
        }
        let before = field(r.encoded_len());
        r.warnings.clear();
        size = size - before + field(r.encoded_len());
    }
    proto::TestMappingResponse {
        results,
        estimated_calls: None,
        estimated_new_users: None,
    }
}

pub(crate) fn to_proto_test_result(row_index: usize, r: TestResult) -> proto::TestRowResult {
    let TestResult {
        accepted,
        skipped,
        event: _,
        event_json: event,
        message_id,
        size_bytes,
        issues,
        warnings,
    } = r;
    let event_omitted = event.is_some() && size_bytes.is_some_and(|s| s > MAX_ECHOED_EVENT_BYTES);
    proto::TestRowResult {
        row_index: row_index as u32,
        accepted,
        skipped,
        event_json: event.filter(|_| !event_omitted),
        message_id,
        size_bytes: size_bytes.map(|s| s as u64),
        issues: issues.into_iter().map(to_proto_issue).collect(),
        event_omitted,
        warnings: warnings.into_iter().map(to_proto_warning).collect(),
    }
}

fn to_proto_warning(w: Warning) -> proto::Warning {
    let Warning {
        code,
        pointer,
        message,
    } = w;
    let code = match code {
        WarningCode::PathUnresolved => proto::WarningCode::PathUnresolved,
        WarningCode::DroppedEmpty => proto::WarningCode::DroppedEmpty,
        WarningCode::Coerced => proto::WarningCode::Coerced,
    };
    proto::Warning {
        code: code.into(),
        pointer,
        message,
    }
}

/// Back to a domain warning; `None` for a code this build does not know.
fn warning_from_proto(w: proto::Warning) -> Option<Warning> {
    let proto::Warning {
        code,
        pointer,
        message,
    } = w;
    let code = match proto::WarningCode::try_from(code).ok()? {
        proto::WarningCode::Unspecified => return None,
        proto::WarningCode::PathUnresolved => WarningCode::PathUnresolved,
        proto::WarningCode::DroppedEmpty => WarningCode::DroppedEmpty,
        proto::WarningCode::Coerced => WarningCode::Coerced,
    };
    Some(Warning {
        code,
        pointer,
        message,
    })
}

/// Back to a domain issue; `None` for a code this build does not know.
fn issue_from_proto(issue: proto::Issue) -> Option<Issue> {
    let proto::Issue {
        code,
        pointer,
        message,
    } = issue;
    Some(Issue {
        code: issue_code_from_proto(code)?,
        pointer,
        message,
    })
}

/// Back to the domain result (for the CLI, which prints what `test-mapping` prints). An issue
/// code this build does not know becomes `None` and is dropped with the rest of its issue.
pub fn test_result_from_proto(r: proto::TestRowResult) -> TestResult {
    let proto::TestRowResult {
        row_index: _,
        accepted,
        skipped,
        event_json,
        message_id,
        size_bytes,
        issues,
        event_omitted: _,
        warnings,
    } = r;
    TestResult {
        accepted,
        skipped,
        event: event_json
            .as_deref()
            .and_then(|e| serde_json::from_str::<Value>(e).ok()),
        event_json,
        message_id,
        size_bytes: size_bytes.map(|s| s as usize),
        issues: issues.into_iter().filter_map(issue_from_proto).collect(),
        warnings: warnings
            .into_iter()
            .filter_map(warning_from_proto)
            .collect(),
    }
}

/// Rows as the API carries them, from docs/DESIGN.md's row JSON (for the CLI).
pub(crate) fn to_proto_row(row: &Row) -> proto::Row {
    proto::Row {
        id: row.id.clone().unwrap_or_default(),
        op: match row.op {
            Op::Added => proto::Op::Added,
            Op::Updated => proto::Op::Updated,
            Op::Deleted => proto::Op::Deleted,
        }
        .into(),
        columns_json: serde_json::to_vec(&row.columns).unwrap_or_default(),
        message_id: row.message_id.clone(),
    }
}

// === SubmitRows and StreamRows ===

/// A submitted row: too large or unreadable rows become a per-row issue (the same limits as
/// TestMapping, [`row`]).
pub(super) fn input(r: proto::Row, limits: &RowLimits) -> Input {
    Input {
        id: r.id.clone(),
        row: row(r, limits),
    }
}

pub(crate) fn to_proto_status(s: RowStatus) -> proto::ResultStatus {
    match s {
        RowStatus::Delivered => proto::ResultStatus::Delivered,
        RowStatus::Rejected => proto::ResultStatus::Rejected,
        // Never answered pending (every call settles its results): not known delivered.
        RowStatus::Failed | RowStatus::Pending => proto::ResultStatus::Failed,
        RowStatus::Skipped => proto::ResultStatus::Skipped,
    }
}

pub(crate) fn to_proto_row_result(r: RowResult) -> proto::RowResult {
    let RowResult {
        row_index,
        row_id,
        mapping_id,
        status,
        message_id,
        issues,
        upstream_status,
        attempts,
        retryable,
        // The answer's RetryInfo carries it (`answer`).
        retry_after: _,
    } = r;
    proto::RowResult {
        row_index,
        row_id,
        mapping_id,
        status: to_proto_status(status).into(),
        message_id,
        issues: issues.into_iter().map(to_proto_issue).collect(),
        upstream_status: upstream_status.map(u32::from),
        attempts,
        retryable,
    }
}

pub(crate) fn to_proto_counts(c: Counts) -> proto::ResultCounts {
    let Counts {
        delivered,
        rejected,
        failed,
        skipped,
    } = c;
    proto::ResultCounts {
        delivered,
        rejected,
        failed,
        skipped,
    }
}

/// What a response holds besides its results (counts, omissions, a chunk id), at most.
const RESPONSE_OVERHEAD: usize = 64;

/// Which results a row call lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResultFilter {
    All,
    NotDelivered,
}

/// The request's `results` field.
pub(super) fn result_filter(field: &str, value: i32) -> Result<ResultFilter, Error> {
    match proto::ResultFilter::try_from(value) {
        Ok(proto::ResultFilter::Unspecified | proto::ResultFilter::All) => Ok(ResultFilter::All),
        Ok(proto::ResultFilter::NotDelivered) => Ok(ResultFilter::NotDelivered),
        Err(_) => Err(Error::invalid(
            field,
            format!("unknown value {value}; expected ALL or NOT_DELIVERED"),
        )),
    }
}

/// A row call's answer: the results it lists, exact counts, what it left out, and when to
/// submit again what the destination's rate limit held back.
pub(super) struct Answer {
    pub results: Vec<proto::RowResult>,
    pub counts: proto::ResultCounts,
    pub omitted_results: u32,
    pub truncated: bool,
    pub retry_info: Option<tonic_types::pb::RetryInfo>,
}

impl Answer {
    pub(super) fn into_submit_response(self) -> proto::SubmitRowsResponse {
        let Answer {
            results,
            counts,
            omitted_results,
            truncated,
            retry_info,
        } = self;
        proto::SubmitRowsResponse {
            results,
            counts: Some(counts),
            omitted_results,
            truncated,
            retry_info,
        }
    }

    pub(super) fn into_stream_response(self, chunk_id: u64) -> proto::StreamRowsResponse {
        let Answer {
            results,
            counts,
            omitted_results,
            truncated,
            retry_info,
        } = self;
        proto::StreamRowsResponse {
            chunk_id,
            results,
            counts: Some(counts),
            omitted_results,
            truncated,
            retry_info,
        }
    }
}

/// Results as SubmitRows and StreamRows answer them: filtered, then within
/// [`MAX_RESPONSE_BYTES`].
pub(super) fn to_proto_results(results: Vec<RowResult>, filter: ResultFilter) -> Answer {
    answer(results, filter, MAX_RESPONSE_BYTES - RESPONSE_OVERHEAD)
}

/// Lists what `filter` keeps within `budget` encoded bytes of results. Past it, results are left
/// out in this order: DELIVERED, SKIPPED, then the rest, each from the last row back; the counts
/// stay exact.
fn answer(results: Vec<RowResult>, filter: ResultFilter, budget: usize) -> Answer {
    use prost::Message as _;
    let counts = to_proto_counts(Counts::of(&results));
    // Every result listed or not: the longest wait the rate limit asked for.
    let retry_info = results
        .iter()
        .filter_map(|r| r.retry_after)
        .max()
        .map(|wait| tonic_types::RetryInfo::new(Some(wait)).into());
    let total = results.len();
    let listed: Vec<proto::RowResult> = results
        .into_iter()
        .filter(|r| filter == ResultFilter::All || r.status != RowStatus::Delivered)
        .map(to_proto_row_result)
        .collect();
    // Each result is a length-delimited field of one tag byte.
    let sizes: Vec<usize> = listed
        .iter()
        .map(|r| {
            let n = r.encoded_len();
            1 + prost::length_delimiter_len(n) + n
        })
        .collect();
    let mut size: usize = sizes.iter().sum();
    let truncated = size > budget;
    let mut keep = vec![true; listed.len()];
    if truncated {
        let rank = |status: i32| match proto::ResultStatus::try_from(status) {
            Ok(proto::ResultStatus::Delivered) => 0,
            Ok(proto::ResultStatus::Skipped) => 1,
            _ => 2,
        };
        let mut order: Vec<usize> = (0..listed.len()).collect();
        order.sort_unstable_by_key(|&i| (rank(listed[i].status), std::cmp::Reverse(i)));
        for i in order {
            if size <= budget {
                break;
            }
            keep[i] = false;
            size -= sizes[i];
        }
    }
    let results: Vec<proto::RowResult> = listed
        .into_iter()
        .zip(keep)
        .filter_map(|(r, k)| k.then_some(r))
        .collect();
    Answer {
        omitted_results: (total - results.len()) as u32,
        truncated,
        results,
        counts,
        retry_info,
    }
}

/// Back to the domain result (for the CLI). `None` for an unknown status.
pub(crate) fn row_result_from_proto(r: proto::RowResult) -> Option<RowResult> {
    let proto::RowResult {
        row_index,
        row_id,
        mapping_id,
        status,
        message_id,
        issues,
        upstream_status,
        attempts,
        retryable,
    } = r;
    let status = match proto::ResultStatus::try_from(status).ok()? {
        proto::ResultStatus::Unspecified => return None,
        proto::ResultStatus::Delivered => RowStatus::Delivered,
        proto::ResultStatus::Rejected => RowStatus::Rejected,
        proto::ResultStatus::Failed => RowStatus::Failed,
        proto::ResultStatus::Skipped => RowStatus::Skipped,
    };
    Some(RowResult {
        row_index,
        row_id,
        mapping_id,
        status,
        message_id,
        issues: issues.into_iter().filter_map(issue_from_proto).collect(),
        upstream_status: upstream_status.map(|s| s as u16),
        attempts,
        retryable,
        retry_after: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(row_index: u32, status: RowStatus) -> RowResult {
        RowResult {
            row_index,
            row_id: format!("r-{row_index}"),
            mapping_id: "map_1".into(),
            status,
            message_id: Some(format!("m-{row_index}")),
            issues: Vec::new(),
            upstream_status: None,
            attempts: 1,
            retryable: false,
            retry_after: None,
        }
    }

    fn listed(a: &Answer) -> Vec<(u32, i32)> {
        a.results.iter().map(|r| (r.row_index, r.status)).collect()
    }

    #[test]
    fn over_the_budget_delivered_then_skipped_then_the_last_rows_go_first() {
        use RowStatus::*;
        let statuses = [Failed, Delivered, Skipped, Rejected, Delivered, Skipped];
        let results = || -> Vec<RowResult> {
            statuses
                .iter()
                .enumerate()
                .map(|(i, s)| result(i as u32, *s))
                .collect()
        };
        let one = {
            use prost::Message as _;
            let r = to_proto_row_result(result(1, Failed));
            2 + r.encoded_len()
        };
        let code = |s: RowStatus| to_proto_status(s) as i32;

        let full = answer(results(), ResultFilter::All, usize::MAX);
        assert_eq!(full.results.len(), 6);
        assert_eq!((full.omitted_results, full.truncated), (0, false));

        // Room for four: both DELIVERED go.
        let a = answer(results(), ResultFilter::All, 4 * one);
        assert_eq!(
            listed(&a),
            [
                (0, code(Failed)),
                (2, code(Skipped)),
                (3, code(Rejected)),
                (5, code(Skipped))
            ]
        );
        assert_eq!((a.omitted_results, a.truncated), (2, true));
        assert_eq!(a.counts.delivered, 2, "the counts stay exact");
        // Room for three: then the last SKIPPED.
        let a = answer(results(), ResultFilter::All, 3 * one);
        assert_eq!(
            listed(&a),
            [(0, code(Failed)), (2, code(Skipped)), (3, code(Rejected))]
        );
        // Room for one: the first row's failure.
        let a = answer(results(), ResultFilter::All, one);
        assert_eq!(listed(&a), [(0, code(Failed))]);
        assert_eq!(a.omitted_results, 5);

        // The filter alone does not truncate.
        let a = answer(results(), ResultFilter::NotDelivered, usize::MAX);
        assert_eq!(a.results.len(), 4);
        assert_eq!((a.omitted_results, a.truncated), (2, false));
        assert_eq!(a.counts.skipped, 2);
    }

    fn event_result(i: u32, event_bytes: usize) -> proto::TestRowResult {
        proto::TestRowResult {
            row_index: i,
            event_json: Some(format!("{{\"pad\":\"{}\"}}", "x".repeat(event_bytes))),
            size_bytes: Some(event_bytes as u64 + 10),
            ..Default::default()
        }
    }

    #[test]
    fn events_are_left_out_from_the_last_row_back_until_the_response_fits() {
        use prost::Message as _;
        let results: Vec<_> = (0..4).map(|i| event_result(i, 1_000)).collect();
        let fits = bounded_test_response(results.clone(), usize::MAX);
        assert!(fits.results.iter().all(|r| !r.event_omitted));
        let limit = 2_500;
        let r = bounded_test_response(results, limit);
        assert!(r.encoded_len() <= limit, "{}", r.encoded_len());
        let omitted: Vec<bool> = r.results.iter().map(|r| r.event_omitted).collect();
        assert_eq!(omitted, [false, false, true, true]);
        assert!(r.results[3].event_json.is_none());
        assert_eq!(r.results[3].size_bytes, Some(1_010), "the size stays exact");
    }

    /// Past the limit even without events, the warnings go too, from the last row back.
    #[test]
    fn warnings_are_left_out_after_the_events() {
        use prost::Message as _;
        let results: Vec<_> = (0..4)
            .map(|i| proto::TestRowResult {
                warnings: vec![
                    proto::Warning {
                        code: proto::WarningCode::PathUnresolved.into(),
                        pointer: "/fields/x/@path".into(),
                        message: "m".repeat(400),
                    };
                    2
                ],
                ..event_result(i, 100)
            })
            .collect();
        let r = bounded_test_response(results, 2_500);
        assert!(r.encoded_len() <= 2_500, "{}", r.encoded_len());
        assert!(r.results.iter().all(|r| r.event_omitted));
        let kept: Vec<usize> = r.results.iter().map(|r| r.warnings.len()).collect();
        assert_eq!(kept, [2, 2, 0, 0]);
    }

    /// A warning's code and its text survive the trip to proto and back (the CLI's path).
    #[test]
    fn warnings_round_trip() {
        let w = Warning {
            code: WarningCode::Coerced,
            pointer: "/fields/user_id".into(),
            message: "m".into(),
        };
        assert_eq!(warning_from_proto(to_proto_warning(w.clone())), Some(w));
        let unknown = proto::Warning {
            code: 99,
            ..Default::default()
        };
        assert_eq!(warning_from_proto(unknown), None);
    }
}
