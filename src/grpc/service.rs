//! Thin handlers: destructure and convert the request, call the store or the mapping engine,
//! convert back. No business rules live here.

use std::pin::Pin;
use std::sync::Arc;

use tokio::time::Instant;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status, Streaming};

use super::convert::{self, DestinationUpdate, MappingUpdate, NewMapping};
use super::deadline::grpc_timeout;
use super::layer::{Outcome, RpcCounts};
use super::proto;
use crate::delivery::{
    Chunk, ChunkAnswer, Delivery, DeliverySettings, SeenIds, StreamEnd, Target, render_pool,
};
use crate::error::Error;
use crate::limits::RequestLimits;
use crate::mapping::{Identity, Mapping, TestResult, Violation};
use crate::store::{AllowedUpstreams, Ledger, NewDestination, Region, Store, check_model};
use crate::sync::{SyncSettings, Syncs};
use crate::usage::{Month, new_users, user_hash};

/// The `segment_connections.v1.Connections` service over a store.
#[derive(Debug)]
pub(crate) struct ConnectionsService<S> {
    store: Arc<S>,
    limits: RequestLimits,
    delivery: Arc<Delivery<S>>,
    syncs: Arc<Syncs<S>>,
}

impl<S: Store + Ledger> ConnectionsService<S> {
    pub(crate) fn new(store: Arc<S>, limits: RequestLimits) -> ConnectionsService<S> {
        let delivery = Arc::new(Delivery::new(store.clone(), DeliverySettings::default()));
        let syncs = Arc::new(Syncs::new(
            delivery.clone(),
            store.clone(),
            SyncSettings::default(),
        ));
        ConnectionsService {
            store,
            limits,
            delivery,
            syncs,
        }
    }

    /// The same service with these delivery and sync settings.
    pub(crate) fn with_delivery(
        self,
        settings: DeliverySettings,
        sync: SyncSettings,
    ) -> ConnectionsService<S> {
        let delivery = Arc::new(Delivery::new(self.store.clone(), settings));
        let syncs = Arc::new(Syncs::new(delivery.clone(), self.store.clone(), sync));
        ConnectionsService {
            delivery,
            syncs,
            ..self
        }
    }

    /// The delivery path (the server tells it when shutdown's grace period ends).
    pub(crate) fn delivery(&self) -> Arc<Delivery<S>> {
        self.delivery.clone()
    }

    /// The row path's cache of destinations and compiled mappings.
    pub(crate) fn row_cache(&self) -> Arc<crate::delivery::Cache<S>> {
        self.delivery.cache().clone()
    }

    /// After a write: the row path sees it on its next lookup.
    fn changed(&self) {
        self.delivery.cache().invalidate();
    }

    /// The target of a row call: the destination must exist and be enabled; looked up once,
    /// waiting on the store no longer than `stop`.
    async fn target(
        &self,
        destination_id: String,
        model: String,
        stop: Instant,
    ) -> Result<Target, Error> {
        let destination_id = convert::id("destination_id", destination_id)?;
        check_model(&model).map_err(|e| Error::invalid("model", e))?;
        self.delivery.target(&destination_id, &model, stop).await
    }

    /// A region a destination may be given: a custom base URL's host must be allowed.
    fn check_region(&self, region: &Region) -> Result<(), Error> {
        match self.delivery.settings().allowed_upstreams.allows(region) {
            true => Ok(()),
            false => Err(Error::invalid("region", AllowedUpstreams::refusal(region))),
        }
    }

    fn check_row_count(&self, field: &str, n: usize) -> Result<(), Error> {
        let max = self.limits.max_rows;
        if n > max {
            return Err(Error::invalid(
                field,
                format!("{n} rows; at most {max} per request"),
            ));
        }
        Ok(())
    }

    /// Compiles the mapping a TestMapping request names or carries. `Err` of the inner result
    /// is an invalid mapping: every row then gets the same `INVALID_MAPPING` result.
    async fn test_subject(
        &self,
        mapping: Option<proto::test_mapping_request::Mapping>,
        destination_id: Option<String>,
    ) -> Result<Result<Mapping, Vec<Violation>>, Error> {
        use proto::test_mapping_request::Mapping as Subject;
        match mapping {
            None => Err(Error::invalid(
                "mapping",
                "is required (a mapping_id or a mapping_json)",
            )),
            Some(Subject::MappingId(id)) => {
                let id = convert::id("mapping_id", id)?;
                let record = self.store.get_mapping(&id).await?;
                if let Some(d) = destination_id
                    && d != record.destination_id
                {
                    return Err(Error::invalid(
                        "destination_id",
                        format!(
                            "mapping {id} belongs to destination {}",
                            record.destination_id
                        ),
                    ));
                }
                // The ids SubmitRows derives from; the document gives the content part.
                let identity = Identity {
                    destination_id: record.destination_id,
                    mapping_id: record.id,
                };
                Ok(Mapping::from_json(
                    record.document.as_bytes(),
                    Some(identity),
                ))
            }
            Some(Subject::MappingJson(json)) => {
                if let Some(d) = destination_id {
                    let d = convert::id("destination_id", d)?;
                    self.store.get_destination(&d).await?;
                }
                Ok(Mapping::from_json(json.as_bytes(), None))
            }
        }
    }
}

type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<proto::StreamRowsResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl<S: Store + Ledger> proto::Connections for ConnectionsService<S> {
    // === Destinations ===

    async fn create_destination(
        &self,
        request: Request<proto::CreateDestinationRequest>,
    ) -> Result<Response<proto::CreateDestinationResponse>, Status> {
        let new = NewDestination::try_from(request.into_inner())?;
        self.check_region(&new.region)?;
        let d = self
            .store
            .create_destination(new)
            .await
            .map_err(Error::from)?;
        self.changed();
        tracing::info!(destination_id = %d.id, "destination created");
        Ok(Response::new(proto::CreateDestinationResponse {
            destination: Some(convert::to_proto_destination(d)),
        }))
    }

    async fn get_destination(
        &self,
        request: Request<proto::GetDestinationRequest>,
    ) -> Result<Response<proto::GetDestinationResponse>, Status> {
        let proto::GetDestinationRequest { id } = request.into_inner();
        let id = convert::id("id", id)?;
        let d = self.store.get_destination(&id).await.map_err(Error::from)?;
        Ok(Response::new(proto::GetDestinationResponse {
            destination: Some(convert::to_proto_destination(d)),
        }))
    }

    async fn list_destinations(
        &self,
        request: Request<proto::ListDestinationsRequest>,
    ) -> Result<Response<proto::ListDestinationsResponse>, Status> {
        let proto::ListDestinationsRequest {} = request.into_inner();
        let all = self.store.list_destinations().await.map_err(Error::from)?;
        Ok(Response::new(proto::ListDestinationsResponse {
            destinations: all.into_iter().map(convert::to_proto_destination).collect(),
        }))
    }

    async fn update_destination(
        &self,
        request: Request<proto::UpdateDestinationRequest>,
    ) -> Result<Response<proto::UpdateDestinationResponse>, Status> {
        let DestinationUpdate { id, version, patch } = request.into_inner().try_into()?;
        if let Some(region) = &patch.region {
            self.check_region(region)?;
            let current = self.store.get_destination(&id).await.map_err(Error::from)?;
            // From another version the update is ABORTED below, whatever the region.
            if current.version == version
                && let Some(why) = patch.key_move_violation(&current.region)
            {
                return Err(Error::invalid("write_key", why).into());
            }
        }
        let d = self
            .store
            .update_destination(&id, version, patch)
            .await
            .map_err(Error::from)?;
        // An update that changed nothing keeps its version (docs/DESIGN.md, "The store").
        if d.version == version {
            tracing::info!(destination_id = %d.id, version = d.version, "destination unchanged");
        } else {
            self.changed();
            tracing::info!(destination_id = %d.id, version = d.version, "destination updated");
        }
        Ok(Response::new(proto::UpdateDestinationResponse {
            destination: Some(convert::to_proto_destination(d)),
        }))
    }

    async fn delete_destination(
        &self,
        request: Request<proto::DeleteDestinationRequest>,
    ) -> Result<Response<proto::DeleteDestinationResponse>, Status> {
        let proto::DeleteDestinationRequest { id } = request.into_inner();
        let id = convert::id("id", id)?;
        self.store
            .delete_destination(&id)
            .await
            .map_err(Error::from)?;
        self.changed();
        self.delivery.cache().forget(&id);
        tracing::info!(destination_id = %id, "destination deleted");
        Ok(Response::new(proto::DeleteDestinationResponse {}))
    }

    // === Mappings ===

    async fn create_mapping(
        &self,
        request: Request<proto::CreateMappingRequest>,
    ) -> Result<Response<proto::CreateMappingResponse>, Status> {
        let NewMapping {
            destination_id,
            content,
        } = request.into_inner().try_into()?;
        let m = self
            .store
            .create_mapping(&destination_id, content)
            .await
            .map_err(Error::from)?;
        self.changed();
        tracing::info!(mapping_id = %m.id, destination_id = %m.destination_id, "mapping created");
        Ok(Response::new(proto::CreateMappingResponse {
            mapping: Some(convert::to_proto_mapping(m)),
        }))
    }

    async fn get_mapping(
        &self,
        request: Request<proto::GetMappingRequest>,
    ) -> Result<Response<proto::GetMappingResponse>, Status> {
        let proto::GetMappingRequest { id } = request.into_inner();
        let id = convert::id("id", id)?;
        let m = self.store.get_mapping(&id).await.map_err(Error::from)?;
        Ok(Response::new(proto::GetMappingResponse {
            mapping: Some(convert::to_proto_mapping(m)),
        }))
    }

    async fn list_mappings(
        &self,
        request: Request<proto::ListMappingsRequest>,
    ) -> Result<Response<proto::ListMappingsResponse>, Status> {
        let proto::ListMappingsRequest { destination_id } = request.into_inner();
        let destination_id = convert::id("destination_id", destination_id)?;
        let all = self
            .store
            .list_mappings(&destination_id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(proto::ListMappingsResponse {
            mappings: all.into_iter().map(convert::to_proto_mapping).collect(),
        }))
    }

    async fn update_mapping(
        &self,
        request: Request<proto::UpdateMappingRequest>,
    ) -> Result<Response<proto::UpdateMappingResponse>, Status> {
        let MappingUpdate {
            id,
            version,
            content,
        } = request.into_inner().try_into()?;
        let m = self
            .store
            .update_mapping(&id, version, content)
            .await
            .map_err(Error::from)?;
        // An update that changed nothing keeps its version (docs/DESIGN.md, "The store").
        if m.version == version {
            tracing::info!(mapping_id = %m.id, version = m.version, "mapping unchanged");
        } else {
            self.changed();
            tracing::info!(mapping_id = %m.id, version = m.version, "mapping updated");
        }
        Ok(Response::new(proto::UpdateMappingResponse {
            mapping: Some(convert::to_proto_mapping(m)),
        }))
    }

    async fn delete_mapping(
        &self,
        request: Request<proto::DeleteMappingRequest>,
    ) -> Result<Response<proto::DeleteMappingResponse>, Status> {
        let proto::DeleteMappingRequest { id } = request.into_inner();
        let id = convert::id("id", id)?;
        self.store.delete_mapping(&id).await.map_err(Error::from)?;
        self.changed();
        tracing::info!(mapping_id = %id, "mapping deleted");
        Ok(Response::new(proto::DeleteMappingResponse {}))
    }

    // === TestMapping ===

    async fn test_mapping(
        &self,
        request: Request<proto::TestMappingRequest>,
    ) -> Result<Response<proto::TestMappingResponse>, Status> {
        let counts = RpcCounts::of(&request);
        let proto::TestMappingRequest {
            mapping,
            destination_id,
            rows,
        } = request.into_inner();
        if rows.is_empty() {
            return Err(Error::invalid("rows", "at least one row is required").into());
        }
        if rows.len() > self.limits.max_test_rows {
            return Err(Error::invalid(
                "rows",
                format!(
                    "{} rows; at most {} per request (--max-test-rows)",
                    rows.len(),
                    self.limits.max_test_rows
                ),
            )
            .into());
        }
        counts.add_rows(rows.len() as u64);
        let by_id = matches!(
            mapping,
            Some(proto::test_mapping_request::Mapping::MappingId(_))
        );
        let given_destination = destination_id.clone();
        let subject = self.test_subject(mapping, destination_id).await?;
        // The destination whose usage the rows would add to, when known.
        let destination = match (by_id, &subject) {
            (true, Ok(m)) => Some(m.identity().destination_id.clone()),
            (true, Err(_)) => None,
            (false, _) => given_destination,
        };
        // Rendered off the async workers (see `render_pool`), unless small and flat.
        let inline = render_pool::cheap(rows.len(), subject.as_ref().is_ok_and(Mapping::is_flat));
        let (row_limits, budget) = (
            self.limits.rows,
            self.delivery.settings().max_render_bytes_per_row,
        );
        // The estimate: each accepted event one API call, and its user (as delivery counts it).
        let state = (rows.into_iter().enumerate(), Vec::new(), Vec::new(), 0u64);
        let (_, results, users, calls) =
            render_pool::run(state, inline, move |(rows, results, users, calls)| {
                let Some((i, row)) = rows.next() else {
                    return false;
                };
                let result = match (convert::row(row, &row_limits), &subject) {
                    (Err(issue), _) => convert::invalid_row(issue),
                    (Ok(row), Ok(mapping)) => mapping.test_within(&row, budget),
                    (Ok(_), Err(violations)) => TestResult::invalid_mapping(violations),
                };
                if result.accepted
                    && let Some(event) = &result.event_json
                {
                    *calls += 1;
                    users.extend(user_hash(event.as_bytes()));
                }
                results.push(convert::to_proto_test_result(i, result));
                true
            })
            .await;
        for r in &results {
            let outcome = match (r.accepted, r.skipped) {
                (_, true) => Outcome::Skipped,
                (true, false) => Outcome::Accepted,
                (false, false) => Outcome::Rejected,
            };
            counts.add(outcome, 1);
        }
        let mut answer = convert::test_response(results);
        if let Some(d) = destination {
            let month = self.delivery.usage(&d, Month::now()).await?;
            answer.estimated_calls = Some(calls);
            answer.estimated_new_users = Some(new_users(&month.users, users));
        }
        Ok(Response::new(answer))
    }

    // === Rows ===

    async fn submit_rows(
        &self,
        request: Request<proto::SubmitRowsRequest>,
    ) -> Result<Response<proto::SubmitRowsResponse>, Status> {
        let settings = self.delivery.settings();
        let stop = settings.stop_at(Instant::now(), grpc_timeout(request.metadata()));
        let rpc = RpcCounts::of(&request);
        let proto::SubmitRowsRequest {
            destination_id,
            model,
            rows,
            results: filter,
        } = request.into_inner();
        self.check_row_count("rows", rows.len())?;
        let filter = convert::result_filter("results", filter)?;
        let target = self.target(destination_id, model, stop).await?;
        rpc.add_rows(rows.len() as u64);
        let inputs = rows
            .into_iter()
            .map(|r| convert::input(r, &self.limits.rows))
            .collect();
        let results = self
            .delivery
            .submit(&target, inputs, &SeenIds::all(), stop)
            .await;
        let answer = convert::to_proto_results(results, filter);
        count_results(&rpc, &answer.counts);
        Ok(Response::new(answer.into_submit_response()))
    }

    type StreamRowsStream = ResponseStream;

    async fn stream_rows(
        &self,
        request: Request<Streaming<proto::StreamRowsRequest>>,
    ) -> Result<Response<Self::StreamRowsStream>, Status> {
        use proto::stream_rows_request::Message;
        let settings = self.delivery.settings();
        let idle = settings.stream_idle;
        // The caller's deadline bounds the whole stream; without one, each chunk gets the default.
        let stream_stop =
            grpc_timeout(request.metadata()).map(|t| settings.stop_at(Instant::now(), Some(t)));
        let rpc = RpcCounts::of(&request);
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(idle, inbound.message())
            .await
            .map_err(|_| Error::StreamIdle(idle))??;
        let header = match first {
            Some(proto::StreamRowsRequest {
                message: Some(Message::Header(h)),
            }) => h,
            _ => {
                return Err(
                    Error::invalid("header", "the first message must be the header").into(),
                );
            }
        };
        let proto::StreamHeader {
            destination_id,
            model,
            results: filter,
        } = header;
        let filter = convert::result_filter("header.results", filter)?;
        let destination_id = convert::id("header.destination_id", destination_id)?;
        check_model(&model).map_err(|e| Error::invalid("header.model", e))?;
        let max_rows = self.limits.max_rows;
        let chunks = inbound.map(move |m| match m {
            Ok(proto::StreamRowsRequest {
                message: Some(Message::Chunk(proto::RowChunk { chunk_id, rows })),
            }) if rows.len() > max_rows => Err(Error::invalid(
                "chunk.rows",
                format!(
                    "chunk {chunk_id}: {} rows; at most {max_rows} per chunk (--max-submit-rows)",
                    rows.len()
                ),
            )
            .into()),
            Ok(proto::StreamRowsRequest {
                message: Some(Message::Chunk(proto::RowChunk { chunk_id, rows })),
            }) => Ok(Chunk { id: chunk_id, rows }),
            Ok(_) => Err(
                Error::invalid("chunk", "every message after the header must be a chunk").into(),
            ),
            Err(status) => Err(status),
        });
        let row_limits = self.limits.rows;
        let read_row = move |r| convert::input(r, &row_limits);
        let answers = self
            .delivery
            .stream(destination_id, model, stream_stop, chunks, read_row)
            .await?;
        let answers = tokio_stream::wrappers::ReceiverStream::new(answers).map(move |a| match a {
            Ok(ChunkAnswer {
                chunk_id,
                rows,
                results,
            }) => {
                rpc.add_rows(rows as u64);
                let answer = convert::to_proto_results(results, filter);
                count_results(&rpc, &answer.counts);
                Ok(answer.into_stream_response(chunk_id))
            }
            Err(StreamEnd::Caller(status)) => Err(status),
            Err(StreamEnd::Error(e)) => Err(Status::from(e)),
        });
        Ok(Response::new(Box::pin(answers)))
    }

    // === Syncs ===

    type SyncStream = super::sync::SyncStream;

    async fn sync(
        &self,
        request: Request<Streaming<proto::SyncRequest>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let settings = self.delivery.settings();
        let deadline = grpc_timeout(request.metadata()).map(|t| Instant::now() + t);
        let answers = super::sync::sync(
            self.syncs.clone(),
            self.limits,
            settings.stream_idle,
            deadline,
            request.into_inner(),
        )
        .await?;
        Ok(Response::new(answers))
    }

    async fn get_sync(
        &self,
        request: Request<proto::GetSyncRequest>,
    ) -> Result<Response<proto::GetSyncResponse>, Status> {
        let id = convert::id("sync_id", request.into_inner().sync_id)?;
        let run = self.store.get_sync(&id).await.map_err(Error::from)?;
        Ok(Response::new(proto::GetSyncResponse {
            sync: Some(super::sync::info(&run)),
        }))
    }

    async fn list_syncs(
        &self,
        request: Request<proto::ListSyncsRequest>,
    ) -> Result<Response<proto::ListSyncsResponse>, Status> {
        let proto::ListSyncsRequest {
            destination_id,
            model,
            page_size,
            page_token,
        } = request.into_inner();
        let destination_id = convert::id("destination_id", destination_id)?;
        let before = super::sync::parse_syncs_token(&page_token)?;
        let size = super::sync::page_size(page_size);
        self.store
            .get_destination(&destination_id)
            .await
            .map_err(Error::from)?;
        let model = (!model.is_empty()).then_some(model.as_str());
        let runs = self
            .store
            .list_syncs(&destination_id, model, before, size + 1)
            .await
            .map_err(Error::from)?;
        let (runs, next_page_token) = super::sync::page(runs, size, super::sync::syncs_token);
        Ok(Response::new(proto::ListSyncsResponse {
            syncs: runs.iter().map(super::sync::info).collect(),
            next_page_token,
        }))
    }

    async fn list_sync_failures(
        &self,
        request: Request<proto::ListSyncFailuresRequest>,
    ) -> Result<Response<proto::ListSyncFailuresResponse>, Status> {
        let proto::ListSyncFailuresRequest {
            sync_id,
            page_size,
            page_token,
        } = request.into_inner();
        let sync_id = convert::id("sync_id", sync_id)?;
        let after: i64 = match page_token.as_str() {
            "" => -1,
            t => t.parse().map_err(|_| {
                Error::invalid("page_token", "is not a token from a previous answer")
            })?,
        };
        let size = super::sync::page_size(page_size);
        self.store.get_sync(&sync_id).await.map_err(Error::from)?;
        let rows = self
            .store
            .list_sync_failures(&sync_id, after, size + 1)
            .await
            .map_err(Error::from)?;
        let (rows, next_page_token) = super::sync::page(rows, size, |(seq, _)| seq.to_string());
        Ok(Response::new(proto::ListSyncFailuresResponse {
            failures: rows
                .into_iter()
                .map(|(_, f)| super::sync::failure(f))
                .collect(),
            next_page_token,
        }))
    }

    async fn reset_sync(
        &self,
        request: Request<proto::ResetSyncRequest>,
    ) -> Result<Response<proto::ResetSyncResponse>, Status> {
        let proto::ResetSyncRequest {
            destination_id,
            model,
            mapping_id,
        } = request.into_inner();
        let destination_id = convert::id("destination_id", destination_id)?;
        check_model(&model).map_err(|e| Error::invalid("model", e))?;
        self.store
            .get_destination(&destination_id)
            .await
            .map_err(Error::from)?;
        let mapping_id = match mapping_id.as_str() {
            "" => None,
            id => {
                let m = self.store.get_mapping(id).await.map_err(Error::from)?;
                if m.destination_id != destination_id || m.model != model {
                    return Err(Error::invalid(
                        "mapping_id",
                        format!(
                            "mapping {id} reads model {:?} of destination {}",
                            m.model, m.destination_id
                        ),
                    )
                    .into());
                }
                Some(id)
            }
        };
        let forgotten = self
            .syncs
            .reset(&destination_id, &model, mapping_id)
            .await?;
        Ok(Response::new(proto::ResetSyncResponse { forgotten }))
    }
    // === Usage ===

    async fn get_usage(
        &self,
        request: Request<proto::GetUsageRequest>,
    ) -> Result<Response<proto::GetUsageResponse>, Status> {
        let proto::GetUsageRequest {
            destination_id,
            month,
        } = request.into_inner();
        let destination_id = convert::id("destination_id", destination_id)?;
        let month = match month {
            None => Month::now(),
            Some(m) => Month::parse(&m).map_err(|e| Error::invalid("month", e))?,
        };
        let usage = self.delivery.usage(&destination_id, month).await?;
        Ok(Response::new(proto::GetUsageResponse {
            month: month.to_string(),
            calls: usage.counts.calls,
            batches: usage.counts.batches,
            bytes: usage.counts.bytes,
            users: usage.users.estimate(),
        }))
    }
}

/// Adds a call's results to its per-RPC counts (the log line and `rows_received_total`).
fn count_results(rpc: &RpcCounts, counts: &proto::ResultCounts) {
    for (outcome, n) in [
        (Outcome::Delivered, counts.delivered),
        (Outcome::Rejected, counts.rejected),
        (Outcome::Failed, counts.failed),
        (Outcome::Skipped, counts.skipped),
    ] {
        rpc.add(outcome, u64::from(n));
    }
}
