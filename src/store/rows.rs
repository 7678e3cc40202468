//! The table rows both backends read, and how they become domain values (sqlx's `FromRow` is
//! generic over the database).

use sqlx::FromRow;

use super::{Destination, MappingRecord, RateLimit, Region, Result, StoreError};

#[derive(FromRow)]
pub(super) struct DestinationRow {
    id: String,
    name: String,
    region: String,
    write_key_fingerprint: String,
    enabled: bool,
    version: i64,
    rate_limit: i64,
}

impl DestinationRow {
    pub(super) fn into_destination(self) -> Result<Destination> {
        let DestinationRow {
            id,
            name,
            region,
            write_key_fingerprint,
            enabled,
            version,
            rate_limit,
        } = self;
        let rate_limit = u32::try_from(rate_limit)
            .ok()
            .and_then(|l| RateLimit::parse(l).ok())
            .ok_or_else(|| {
                StoreError::Backend(
                    format!("destination {id}: stored rate limit {rate_limit} is out of range")
                        .into(),
                )
            })?;
        let region = Region::parse(&region).map_err(|e| {
            StoreError::Backend(format!("destination {id}: stored region {e}").into())
        })?;
        Ok(Destination {
            id,
            name,
            region,
            write_key_fingerprint,
            enabled,
            version: version as u64,
            rate_limit,
        })
    }
}

#[derive(FromRow)]
pub(super) struct MappingRow {
    id: String,
    destination_id: String,
    name: String,
    model: String,
    enabled: bool,
    version: i64,
    document: String,
}

impl From<MappingRow> for MappingRecord {
    fn from(row: MappingRow) -> MappingRecord {
        let MappingRow {
            id,
            destination_id,
            name,
            model,
            enabled,
            version,
            document,
        } = row;
        MappingRecord {
            id,
            destination_id,
            name,
            model,
            enabled,
            version: version as u64,
            document,
        }
    }
}
