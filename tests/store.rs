//! The store suite, run against both backends: `sqlite::*` over a temporary file, `postgres::*`
//! over a fresh database on `TEST_DATABASE_URL` (skipped with a notice when it is unset). Then
//! what only PostgreSQL has: migrations racing at start-up, and changes reaching other replicas.

mod common {
    pub mod pg;
}

use std::sync::Arc;
use std::time::{Duration, Instant};

use segment_connections::store::{
    AnyStore, Change, CryptoError, DestinationPatch, KeyRing, Kind, Ledger,
    MAX_MAPPINGS_PER_DESTINATION, MappingContent, Name, NewDestination, NewSync, PostgresOptions,
    PostgresStore, Progress, RateLimit, RecordState, Region, Settled, SqliteStore, StateWrite,
    Store, StoreError, SyncMode, WriteKey,
};

use common::pg::TestDb;
use segment_connections::usage::{Counts, Delta, Meter, Month, Sketch, Tally, Usage, hash};

/// Where a case's store lives; each case may open it several times (as several replicas, or
/// after a restart with other keys).
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(TestDb),
}

impl Backend {
    fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    async fn postgres() -> Option<Backend> {
        TestDb::create().await.map(Backend::Postgres)
    }

    async fn try_open(&self, keys: &str) -> Result<AnyStore, StoreError> {
        let keys = KeyRing::from_hex_lines(keys).unwrap();
        Ok(match self {
            Backend::Sqlite(dir) => SqliteStore::open(&dir.path().join("c.db"), keys)
                .await?
                .into(),
            Backend::Postgres(db) => PostgresStore::connect(&db.url, keys).await?.into(),
        })
    }

    async fn open(&self, keys: &str) -> AnyStore {
        self.try_open(keys).await.unwrap()
    }

    /// Runs `sql` behind the store's back.
    async fn execute(&self, sql: &str) {
        use sqlx::{Connection as _, Executor as _};
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Backend::Sqlite(dir) => {
                let url = format!("sqlite://{}", dir.path().join("c.db").display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                conn.execute(sql).await.unwrap();
                conn.close().await.unwrap();
            }
            Backend::Postgres(db) => {
                let mut conn = db.connect().await;
                conn.execute(sql).await.unwrap();
            }
        }
    }
}

/// One fixed key, so cases can reopen their store.
fn key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| KeyRing::generate_hex().unwrap())
}

fn new_destination(name: &str, write_key: &str) -> NewDestination {
    NewDestination {
        name: Name::parse(name.into()).unwrap(),
        region: Region::Us,
        write_key: WriteKey::parse(write_key.into()).unwrap(),
        enabled: true,
        rate_limit: Default::default(),
    }
}

fn mapping(name: &str) -> MappingContent {
    mapping_of(name, "orders")
}

/// A mapping that reads `model`.
fn mapping_of(name: &str, model: &str) -> MappingContent {
    MappingContent {
        name: Name::parse(name.into()).unwrap(),
        model: model.into(),
        enabled: true,
        document: format!(
            r#"{{"name":"{name}","model":"{model}","action":"track","fields":{{}}}}"#
        ),
    }
}

/// A patch that changes something: it sets `enabled`.
fn enable(enabled: bool) -> DestinationPatch {
    DestinationPatch {
        enabled: Some(enabled),
        ..Default::default()
    }
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(&super::Backend::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(backend) = super::Backend::postgres().await else { return };
                    super::$case(&backend).await
                }
            )*
        }
    };
}

suite!(
    destinations_crud,
    an_update_to_what_is_stored_changes_nothing,
    lists_are_in_byte_order_on_both_backends,
    names_are_unique,
    stale_versions_and_unknown_ids,
    mappings_crud_and_cascade,
    the_mapping_limit_holds_under_concurrent_creates,
    of_concurrent_updates_exactly_one_wins,
    every_write_bumps_the_catalog_version_and_is_announced,
    rotation_reencrypts_under_the_newest_key,
    start_up_refuses_keys_that_cannot_open_stored_write_keys,
    watch_changes_calls_back_on_writes_from_any_replica,
    usage_of_replicas_flushing_at_once_adds_up_and_merges,
    an_unreadable_stored_sketch_is_counted_afresh,
    the_rate_limit_round_trips,
    ledger_writes_of_many_records_round_trip_in_one_transaction,
);

// === the cases ===

/// A ledger entry as a sync writes it.
fn entry(record_id: &str, i: usize, status: Settled) -> RecordState {
    RecordState {
        record_id: record_id.to_owned(),
        checksum: vec![(i % 251) as u8, 0, 0xff, (i / 251) as u8],
        status,
        op: Change::Updated,
        tries: (i % 4) as u32,
        since: 1_700_000_000_000 + i as i64,
        columns: (status == Settled::Pending)
            .then(|| format!(r#"{{"n":{i},"s":"é \" \\ \u0000 ☃"}}"#).into_bytes()),
    }
}

/// `record` writes thousands of ledger entries over several statements, in one transaction:
/// ids with quotes, backslashes and non-ASCII characters, checksums with every byte, pending
/// rows' columns, the last of two writes to one key, and removals, all read back as written
/// (`changed` of what was written is empty but for the unsynced; `unseen` returns them in
/// order with their columns).
async fn ledger_writes_of_many_records_round_trip_in_one_transaction(b: &Backend) {
    let s = b.open(key()).await;
    let d = s
        .create_destination(new_destination("prod", "k"))
        .await
        .unwrap();
    let maps = [
        s.create_mapping(&d.id, mapping("a")).await.unwrap().id,
        s.create_mapping(&d.id, mapping("b")).await.unwrap().id,
    ];
    let new = NewSync {
        destination_id: d.id.clone(),
        model: "orders".into(),
        mode: SyncMode::Full,
        dry_run: false,
        now: 1,
        lease: 60_000,
    };
    let run = s.start_sync(&new).await.unwrap().unwrap();
    let n = 6_200;
    let ids: Vec<String> = (0..n)
        .map(|i| match i % 3 {
            0 => format!("r-{i:05}"),
            1 => format!("r-{i:05} \"q\" \\ é"),
            _ => format!("r-{i:05}-☃"),
        })
        .collect();
    let status = |i: usize| match i % 10 {
        0 => Settled::Pending,
        1 => Settled::Rejected,
        _ => Settled::Synced,
    };
    let mut writes = Vec::new();
    for m in &maps {
        for (i, id) in ids.iter().enumerate() {
            // A first write the second one replaces.
            if i % 7 == 0 {
                writes.push(StateWrite::Put {
                    mapping_id: m.clone(),
                    state: entry(id, i + 1, Settled::GaveUp),
                });
            }
            writes.push(StateWrite::Put {
                mapping_id: m.clone(),
                state: entry(id, i, status(i)),
            });
        }
    }
    let progress = Progress {
        received: 0,
        counts: "[]",
        first_failure: 0,
    };
    s.record(&run.id, &[], &writes, &[], progress)
        .await
        .unwrap();
    let removed: Vec<StateWrite> = ids
        .iter()
        .step_by(5)
        .map(|id| StateWrite::Remove {
            mapping_id: maps[1].clone(),
            record_id: id.clone(),
        })
        .collect();
    s.record(&run.id, &[], &removed, &[], progress)
        .await
        .unwrap();

    for (k, m) in maps.iter().enumerate() {
        let sums: Vec<Vec<u8>> = (0..n)
            .map(|i| entry("", i, Settled::Synced).checksum)
            .collect();
        let asked: Vec<(&str, &[u8])> = ids
            .iter()
            .zip(&sums)
            .map(|(id, sum)| (id.as_str(), sum.as_slice()))
            .collect();
        let mut changed = s.changed(m, &asked).await.unwrap();
        changed.sort_by(|a, b| a.0.cmp(&b.0));
        let mut expected: Vec<(String, Option<RecordState>)> = (0..n)
            .filter_map(|i| {
                let gone = k == 1 && i % 5 == 0;
                let mut e = entry(&ids[i], i, status(i));
                e.columns = None;
                match (gone, status(i)) {
                    (true, _) => Some((ids[i].clone(), None)),
                    (false, Settled::Synced) => None,
                    (false, _) => Some((ids[i].clone(), Some(e))),
                }
            })
            .collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(changed.len(), expected.len(), "mapping {k}");
        assert!(changed == expected, "mapping {k}: changed differs");

        let mut unseen = Vec::new();
        let mut after = String::new();
        loop {
            let page = s.unseen(&run.id, m, true, &after, 1000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.record_id.clone();
            unseen.extend(page);
        }
        let mut pending: Vec<RecordState> = (0..n)
            .filter(|&i| status(i) == Settled::Pending && !(k == 1 && i % 5 == 0))
            .map(|i| entry(&ids[i], i, Settled::Pending))
            .collect();
        pending.sort_by(|a, b| a.record_id.as_bytes().cmp(b.record_id.as_bytes()));
        assert_eq!(unseen.len(), pending.len(), "mapping {k}");
        assert!(unseen == pending, "mapping {k}: pending entries differ");
    }
}

/// A destination's rate limit is stored on create, changed and removed by updates (each a new
/// version), kept by a patch that does not name it, and read back after a restart; a row the
/// store did not write (as before the migration) is unlimited.
async fn the_rate_limit_round_trips(b: &Backend) {
    let s = b.open(key()).await;
    let limited = s
        .create_destination(NewDestination {
            rate_limit: RateLimit::parse(250).unwrap(),
            ..new_destination("limited", "wk_limited")
        })
        .await
        .unwrap();
    assert_eq!(limited.rate_limit.get(), 250);
    let open = s
        .create_destination(new_destination("open", "wk_open"))
        .await
        .unwrap();
    assert_eq!(open.rate_limit, RateLimit::UNLIMITED);
    let set = |l: u32| DestinationPatch {
        rate_limit: Some(RateLimit::parse(l).unwrap()),
        ..Default::default()
    };
    let v2 = s
        .update_destination(&limited.id, 1, set(1000))
        .await
        .unwrap();
    assert_eq!((v2.rate_limit.get(), v2.version), (1000, 2));
    // The same limit again changes nothing; another field's patch keeps it.
    let same = s
        .update_destination(&limited.id, 2, set(1000))
        .await
        .unwrap();
    assert_eq!(same, v2);
    let v3 = s
        .update_destination(&limited.id, 2, enable(false))
        .await
        .unwrap();
    assert_eq!((v3.rate_limit.get(), v3.version), (1000, 3));
    drop(s);
    // A restart reads what was stored.
    let s = b.open(key()).await;
    assert_eq!(s.get_destination(&limited.id).await.unwrap(), v3);
    let all = s.list_destinations().await.unwrap();
    let limits: Vec<(&str, u32)> = all
        .iter()
        .map(|d| (d.name.as_str(), d.rate_limit.get()))
        .collect();
    assert_eq!(limits, [("limited", 1000), ("open", 0)]);
    // 0 removes the limit.
    let v4 = s.update_destination(&limited.id, 3, set(0)).await.unwrap();
    assert_eq!((v4.rate_limit, v4.version), (RateLimit::UNLIMITED, 4));
    // A row inserted without the column (as every row was before the migration) is unlimited.
    b.execute(&format!(
        "INSERT INTO destinations (id, name, region, write_key_key_id, write_key_nonce, \
         write_key_ciphertext, write_key_fingerprint, enabled, version) \
         SELECT 'dst_old', 'old', region, write_key_key_id, write_key_nonce, \
         write_key_ciphertext, write_key_fingerprint, enabled, 1 \
         FROM destinations WHERE id = '{}'",
        open.id
    ))
    .await;
    let old = s.get_destination("dst_old").await.unwrap();
    assert_eq!(old.rate_limit, RateLimit::UNLIMITED);
}

/// What a replica counted: `calls` events of users `u{first}..u{first + users}`, in one batch.
fn usage_delta(
    destination_id: &str,
    month: Month,
    calls: u64,
    users: std::ops::Range<u32>,
) -> Vec<Delta> {
    let meter = Meter::new();
    let tally = Tally {
        counts: Counts {
            calls,
            batches: 1,
            bytes: calls * 300,
        },
        users: users
            .map(|i| hash(format!("\"u{i}\"").as_bytes()))
            .collect(),
    };
    meter.record(destination_id, month, &tally);
    meter.pending()
}

/// Two replicas flush the same destination's month at once, many times: every count is added,
/// and the users are the union of both replicas' sketches (none lost to a concurrent flush).
/// A catalog change it is not: no version moves.
async fn usage_of_replicas_flushing_at_once_adds_up_and_merges(b: &Backend) {
    let (a, c) = (Arc::new(b.open(key()).await), Arc::new(b.open(key()).await));
    let d = a
        .create_destination(new_destination("prod", "k-1"))
        .await
        .unwrap();
    let month = Month::parse("2026-12").unwrap();
    let version = a.catalog_version().await.unwrap();
    assert_eq!(a.usage(&d.id, month).await.unwrap(), Usage::default());

    // Replica a counts users 0..3000, replica c 2000..5000, in 20 flushes each, side by side.
    let flushes = |s: Arc<AnyStore>, first: u32| {
        let id = d.id.clone();
        tokio::spawn(async move {
            for k in 0..20u32 {
                let from = first + k * 150;
                s.add_usage(&usage_delta(&id, month, 10, from..from + 150))
                    .await
                    .unwrap();
            }
        })
    };
    let (x, y) = (flushes(a.clone(), 0), flushes(c.clone(), 2000));
    x.await.unwrap();
    y.await.unwrap();

    let total = c.usage(&d.id, month).await.unwrap();
    assert_eq!(
        total.counts,
        Counts {
            calls: 400,
            batches: 40,
            bytes: 400 * 300
        }
    );
    let mut union = Sketch::new();
    for i in 0..5000u32 {
        union.insert_hash(hash(format!("\"u{i}\"").as_bytes()));
    }
    assert_eq!(
        total.users, union,
        "register-wise max of both replicas' sketches"
    );
    let users = total.users.estimate();
    assert!((4900..=5100).contains(&users), "{users}");
    assert_eq!(
        a.usage(&d.id, month).await.unwrap(),
        total,
        "every replica reads the same"
    );
    assert_eq!(
        a.catalog_version().await.unwrap(),
        version,
        "usage is no catalog write"
    );

    // Other months and destinations are apart; unknown ones are NotFound; a flush for a
    // destination deleted meanwhile is dropped, and the deletion takes its usage along.
    let other = Month::parse("2026-11").unwrap();
    assert_eq!(a.usage(&d.id, other).await.unwrap(), Usage::default());
    assert!(matches!(
        a.usage("dst_nope", month).await,
        Err(StoreError::NotFound {
            kind: Kind::Destination,
            ..
        })
    ));
    a.add_usage(&usage_delta("dst_nope", month, 5, 0..5))
        .await
        .unwrap();
    a.delete_destination(&d.id).await.unwrap();
    a.add_usage(&usage_delta(&d.id, month, 5, 0..5))
        .await
        .unwrap();
    assert!(matches!(
        a.usage(&d.id, month).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// A stored sketch that is not one (a bad disk, a hand edit) reads as empty, and the next flush
/// replaces it; the counters are kept.
async fn an_unreadable_stored_sketch_is_counted_afresh(b: &Backend) {
    let s = b.open(key()).await;
    let d = s
        .create_destination(new_destination("prod", "k-1"))
        .await
        .unwrap();
    let month = Month::parse("2026-12").unwrap();
    s.add_usage(&usage_delta(&d.id, month, 7, 0..100))
        .await
        .unwrap();
    b.execute(&format!(
        "UPDATE destination_usage SET users_sketch = {} WHERE destination_id = '{}'",
        match b {
            Backend::Sqlite(_) => "X'DEADBEEF'",
            Backend::Postgres(_) => "'\\xdeadbeef'::bytea",
        },
        d.id
    ))
    .await;
    let u = s.usage(&d.id, month).await.unwrap();
    assert_eq!(u.counts.calls, 7);
    assert!(u.users.is_empty());
    s.add_usage(&usage_delta(&d.id, month, 1, 0..10))
        .await
        .unwrap();
    let u = s.usage(&d.id, month).await.unwrap();
    assert_eq!(u.counts.calls, 8);
    assert_eq!(u.users.estimate(), 10);
}

async fn an_update_to_what_is_stored_changes_nothing(b: &Backend) {
    let s = b.open(key()).await;
    let mut changes = s.subscribe_changes().unwrap();
    let d = s
        .create_destination(new_destination("prod", "k-1"))
        .await
        .unwrap();
    let m = s.create_mapping(&d.id, mapping("m")).await.unwrap();
    let before = s.catalog_version().await.unwrap();
    while changes.try_recv().is_ok() {}

    // The same mapping again: the stored record back, no version moves, nothing announced.
    assert_eq!(s.update_mapping(&m.id, 1, mapping("m")).await.unwrap(), m);
    // A document that differs only in whitespace and key order is the same document; the text
    // stored stays.
    let mut reformatted = mapping("m");
    reformatted.document =
        "{\n  \"fields\": {},\n  \"action\": \"track\",\n  \"model\": \"orders\", \"name\": \"m\"\n}\n"
            .into();
    assert_eq!(s.update_mapping(&m.id, 1, reformatted).await.unwrap(), m);
    // The same destination: an empty patch, or one that gives the stored values and write key.
    assert_eq!(
        s.update_destination(&d.id, 1, DestinationPatch::default())
            .await
            .unwrap(),
        d
    );
    let same = DestinationPatch {
        name: Some(Name::parse("prod".into()).unwrap()),
        region: Some(Region::Us),
        write_key: Some(WriteKey::parse("k-1".into()).unwrap()),
        enabled: Some(true),
        rate_limit: Default::default(),
    };
    assert_eq!(s.update_destination(&d.id, 1, same).await.unwrap(), d);
    assert_eq!(s.catalog_version().await.unwrap(), before);
    assert_eq!(s.get_mapping(&m.id).await.unwrap(), m);
    assert_eq!(s.get_destination(&d.id).await.unwrap(), d);
    // Nothing was announced: the next announcement is the next real write's.
    let changed = s
        .update_mapping(&m.id, 1, mapping_of("m", "users"))
        .await
        .unwrap();
    assert_eq!(changed.version, 2);
    let v = tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, before + 1);

    // A new write key is a change, even with everything else the same.
    let new_key = DestinationPatch {
        write_key: Some(WriteKey::parse("k-2".into()).unwrap()),
        ..Default::default()
    };
    assert_eq!(
        s.update_destination(&d.id, 1, new_key)
            .await
            .unwrap()
            .version,
        2
    );
    assert_eq!(
        s.destination_write_key(&d.id).await.unwrap().expose(),
        "k-2"
    );
    assert_eq!(s.catalog_version().await.unwrap(), before + 2);
}

async fn destinations_crud(b: &Backend) {
    let s = b.open(key()).await;
    let d = s
        .create_destination(new_destination("prod", "wk_secret_1"))
        .await
        .unwrap();
    assert!(d.id.starts_with("dst_"));
    assert_eq!((d.name.as_str(), d.version, d.enabled), ("prod", 1, true));
    assert_eq!(
        d.write_key_fingerprint,
        WriteKey::parse("wk_secret_1".into()).unwrap().fingerprint()
    );
    assert_eq!(s.get_destination(&d.id).await.unwrap(), d);
    s.create_destination(new_destination("Zeta", "wk2"))
        .await
        .unwrap();
    s.create_destination(new_destination("alpha", "wk3"))
        .await
        .unwrap();
    let names: Vec<String> = s
        .list_destinations()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    // Byte order on both backends.
    assert_eq!(names, ["Zeta", "alpha", "prod"]);

    let updated = s
        .update_destination(
            &d.id,
            1,
            DestinationPatch {
                name: Some(Name::parse("production".into()).unwrap()),
                region: Some(Region::Eu),
                write_key: Some(WriteKey::parse("wk_rotated".into()).unwrap()),
                enabled: Some(false),
                rate_limit: Default::default(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            updated.name.as_str(),
            &updated.region,
            updated.enabled,
            updated.version
        ),
        ("production", &Region::Eu, false, 2)
    );
    assert_eq!(
        s.destination_write_key(&d.id).await.unwrap().expose(),
        "wk_rotated"
    );
    // An empty patch changes nothing, the version included.
    let same = s
        .update_destination(&d.id, 2, DestinationPatch::default())
        .await
        .unwrap();
    assert_eq!(same, updated);

    s.delete_destination(&d.id).await.unwrap();
    assert!(matches!(
        s.get_destination(&d.id).await,
        Err(StoreError::NotFound {
            kind: Kind::Destination,
            ..
        })
    ));
    assert!(matches!(
        s.delete_destination(&d.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Destinations by name and a destination's mappings by name, in byte order whatever the
/// database's collation (case, punctuation and accents do not regroup them).
async fn lists_are_in_byte_order_on_both_backends(b: &Backend) {
    let s = b.open(key()).await;
    let names = [
        "b", "B", "a_b", "a-b", "ab", "é", "e", "Z", "z", "a b", "A", "a",
    ];
    let mut sorted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    sorted.sort();
    for name in names {
        s.create_destination(new_destination(name, "k"))
            .await
            .unwrap();
    }
    let listed: Vec<String> = (s.list_destinations().await.unwrap())
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(listed, sorted);
    let d = s.list_destinations().await.unwrap().remove(0);
    for name in names {
        s.create_mapping(&d.id, mapping(name)).await.unwrap();
    }
    let listed: Vec<String> = (s.list_mappings(&d.id).await.unwrap())
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(listed, sorted);
}

async fn names_are_unique(b: &Backend) {
    let s = b.open(key()).await;
    let d = s
        .create_destination(new_destination("prod", "k"))
        .await
        .unwrap();
    let other = s
        .create_destination(new_destination("dev", "k"))
        .await
        .unwrap();
    assert!(matches!(
        s.create_destination(new_destination("prod", "k")).await,
        Err(StoreError::NameTaken {
            kind: Kind::Destination,
            ..
        })
    ));
    assert!(matches!(
        s.update_destination(
            &other.id,
            1,
            DestinationPatch {
                name: Some(Name::parse("prod".into()).unwrap()),
                ..Default::default()
            }
        )
        .await,
        Err(StoreError::NameTaken { .. })
    ));
    s.create_mapping(&d.id, mapping("m")).await.unwrap();
    let m2 = s.create_mapping(&d.id, mapping("m2")).await.unwrap();
    assert!(matches!(
        s.create_mapping(&d.id, mapping("m")).await,
        Err(StoreError::NameTaken {
            kind: Kind::Mapping,
            scope: Some(_),
            ..
        })
    ));
    assert!(matches!(
        s.update_mapping(&m2.id, 1, mapping("m")).await,
        Err(StoreError::NameTaken {
            kind: Kind::Mapping,
            ..
        })
    ));
    // The same name in another destination is fine.
    s.create_mapping(&other.id, mapping("m")).await.unwrap();
}

async fn stale_versions_and_unknown_ids(b: &Backend) {
    let s = b.open(key()).await;
    let d = s
        .create_destination(new_destination("prod", "k"))
        .await
        .unwrap();
    s.update_destination(&d.id, 1, enable(false)).await.unwrap();
    match s.update_destination(&d.id, 1, enable(true)).await {
        Err(StoreError::StaleVersion {
            expected: 1,
            actual: 2,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.update_destination("dst_nope", 1, DestinationPatch::default())
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let m = s.create_mapping(&d.id, mapping("m")).await.unwrap();
    s.update_mapping(&m.id, 1, mapping_of("m", "users"))
        .await
        .unwrap();
    // A stale version is refused whatever the update: a change, or what is stored already.
    for content in [mapping("m"), mapping_of("m", "users")] {
        match s.update_mapping(&m.id, 1, content).await {
            Err(StoreError::StaleVersion {
                kind: Kind::Mapping,
                expected: 1,
                actual: 2,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }
    match s.update_destination(&d.id, 1, enable(false)).await {
        Err(StoreError::StaleVersion { actual: 2, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.update_mapping("map_nope", 1, mapping("m")).await,
        Err(StoreError::NotFound {
            kind: Kind::Mapping,
            ..
        })
    ));
    assert!(matches!(
        s.create_mapping("dst_nope", mapping("m")).await,
        Err(StoreError::NotFound {
            kind: Kind::Destination,
            ..
        })
    ));
    assert!(matches!(
        s.list_mappings("dst_nope").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.destination_write_key("dst_nope").await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn mappings_crud_and_cascade(b: &Backend) {
    let s = b.open(key()).await;
    let d = s
        .create_destination(new_destination("prod", "k"))
        .await
        .unwrap();
    let m = s.create_mapping(&d.id, mapping("orders")).await.unwrap();
    assert!(m.id.starts_with("map_"));
    assert_eq!((m.version, m.model.as_str()), (1, "orders"));
    assert_eq!(s.get_mapping(&m.id).await.unwrap(), m);
    s.create_mapping(&d.id, mapping("B")).await.unwrap();
    let names: Vec<String> = s
        .list_mappings(&d.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["B", "orders"]);
    let mut content = mapping("orders");
    content.enabled = false;
    content.model = "users".into();
    let updated = s.update_mapping(&m.id, 1, content).await.unwrap();
    assert_eq!(
        (updated.version, updated.enabled, updated.model.as_str()),
        (2, false, "users")
    );
    s.delete_mapping(&m.id).await.unwrap();
    assert!(matches!(
        s.delete_mapping(&m.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(s.list_mappings(&d.id).await.unwrap().len(), 1);
    let left = s.list_mappings(&d.id).await.unwrap().remove(0);
    s.delete_destination(&d.id).await.unwrap();
    assert!(matches!(
        s.get_mapping(&left.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn the_mapping_limit_holds_under_concurrent_creates(b: &Backend) {
    // Two "replicas" on one store.
    let (a, c) = (Arc::new(b.open(key()).await), Arc::new(b.open(key()).await));
    let d = a
        .create_destination(new_destination("prod", "k"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..MAX_MAPPINGS_PER_DESTINATION + 10 {
        let s = if i % 2 == 0 { a.clone() } else { c.clone() };
        let id = d.id.clone();
        tasks.push(tokio::spawn(async move {
            s.create_mapping(&id, mapping(&format!("m{i}"))).await
        }));
    }
    let mut created = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::TooManyMappings { limit, .. }) => {
                assert_eq!(limit, MAX_MAPPINGS_PER_DESTINATION);
                refused += 1
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((created, refused), (MAX_MAPPINGS_PER_DESTINATION, 10));
    assert_eq!(
        a.list_mappings(&d.id).await.unwrap().len(),
        MAX_MAPPINGS_PER_DESTINATION
    );
}

async fn of_concurrent_updates_exactly_one_wins(b: &Backend) {
    let (a, c) = (Arc::new(b.open(key()).await), Arc::new(b.open(key()).await));
    let d = a
        .create_destination(new_destination("prod", "k"))
        .await
        .unwrap();
    let m = a.create_mapping(&d.id, mapping("m")).await.unwrap();
    for round in 0..10u64 {
        let version = round + 1;
        // Each a change (an update to what is stored would change nothing).
        let model = format!("model-{round}");
        let (x, y) = tokio::join!(
            a.update_mapping(&m.id, version, mapping_of("m", &model)),
            c.update_mapping(&m.id, version, mapping_of("m", &model))
        );
        let stale = [&x, &y]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::StaleVersion { .. })))
            .count();
        assert_eq!(
            (x.is_ok() as u32 + y.is_ok() as u32, stale),
            (1, 1),
            "{x:?} {y:?}"
        );
        let enabled = round % 2 == 1;
        let (x, y) = tokio::join!(
            a.update_destination(&d.id, version, enable(enabled)),
            c.update_destination(&d.id, version, enable(enabled))
        );
        assert_eq!(x.is_ok() as u32 + y.is_ok() as u32, 1, "{x:?} {y:?}");
    }
    assert_eq!(a.get_mapping(&m.id).await.unwrap().version, 11);
}

async fn every_write_bumps_the_catalog_version_and_is_announced(b: &Backend) {
    let s = b.open(key()).await;
    let mut changes = s
        .subscribe_changes()
        .expect("both backends announce changes");
    let mut last = s.catalog_version().await.unwrap();
    // Each write moves the version on and is announced; reads and failed writes do not.
    let mut expect_bump = async |s: &AnyStore, what: &str| {
        let v = s.catalog_version().await.unwrap();
        // Once per write, on both backends (a cascade too is one write).
        assert_eq!(v, last + 1, "{what}: {v} after {last}");
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let got = changes.recv().await.unwrap();
                if got >= v {
                    return got;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what}: version {v} never announced"));
        assert_eq!(seen, v, "{what}");
        last = v;
    };
    let d = s
        .create_destination(new_destination("prod", "k"))
        .await
        .unwrap();
    expect_bump(&s, "create destination").await;
    s.update_destination(&d.id, 1, enable(false)).await.unwrap();
    expect_bump(&s, "update destination").await;
    let m = s.create_mapping(&d.id, mapping("m")).await.unwrap();
    expect_bump(&s, "create mapping").await;
    s.update_mapping(&m.id, 1, mapping_of("m", "users"))
        .await
        .unwrap();
    expect_bump(&s, "update mapping").await;
    s.create_mapping(&d.id, mapping("m2")).await.unwrap();
    expect_bump(&s, "create mapping 2").await;
    s.delete_mapping(&m.id).await.unwrap();
    expect_bump(&s, "delete mapping").await;

    let before = s.catalog_version().await.unwrap();
    s.get_destination(&d.id).await.unwrap();
    s.list_mappings(&d.id).await.unwrap();
    s.update_mapping(&m.id, 1, mapping("m")).await.unwrap_err();
    s.update_destination(&d.id, 1, enable(true))
        .await
        .unwrap_err();
    s.create_destination(new_destination("prod", "k"))
        .await
        .unwrap_err();
    assert_eq!(s.catalog_version().await.unwrap(), before);

    s.delete_destination(&d.id).await.unwrap();
    expect_bump(&s, "delete destination (and its mapping)").await;
}

async fn rotation_reencrypts_under_the_newest_key(b: &Backend) {
    let old = KeyRing::generate_hex().unwrap();
    let new = KeyRing::generate_hex().unwrap();
    let s = b.open(&old).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let d = s
            .create_destination(new_destination(&format!("d{i}"), &format!("wk_{i}")))
            .await
            .unwrap();
        ids.push((d.id, d.version));
    }
    drop(s);
    // The new key first, the old one kept to decrypt.
    let s = b.open(&format!("{new}\n{old}\n")).await;
    // New writes use the new key; old write keys still open.
    let fresh = s
        .create_destination(new_destination("fresh", "wk_fresh"))
        .await
        .unwrap();
    assert_eq!(
        s.destination_write_key(&ids[0].0).await.unwrap().expose(),
        "wk_0"
    );
    assert_eq!(s.reencrypt_write_keys().await.unwrap(), 3);
    assert_eq!(s.reencrypt_write_keys().await.unwrap(), 0, "nothing left");
    for (id, version) in &ids {
        // The destinations themselves are unchanged.
        assert_eq!(s.get_destination(id).await.unwrap().version, *version);
    }
    drop(s);
    // The new key alone now opens everything.
    let s = b.open(&new).await;
    for (i, (id, _)) in ids.iter().enumerate() {
        assert_eq!(
            s.destination_write_key(id).await.unwrap().expose(),
            format!("wk_{i}")
        );
    }
    assert_eq!(
        s.destination_write_key(&fresh.id).await.unwrap().expose(),
        "wk_fresh"
    );
}

async fn start_up_refuses_keys_that_cannot_open_stored_write_keys(b: &Backend) {
    let old = KeyRing::generate_hex().unwrap();
    let old_id = KeyRing::from_hex_lines(&old)
        .unwrap()
        .current_key_id()
        .to_owned();
    let s = b.open(&old).await;
    s.create_destination(new_destination("a", "wk_a"))
        .await
        .unwrap();
    s.create_destination(new_destination("b", "wk_b"))
        .await
        .unwrap();
    drop(s);
    let other = KeyRing::generate_hex().unwrap();
    let err = b.try_open(&other).await.unwrap_err();
    match &err {
        StoreError::UndecryptableWriteKeys {
            count: 2,
            cause: CryptoError::UnknownKey(id),
            ..
        } if *id == old_id => {}
        other => panic!("{other:?}"),
    }
    let shown = err.to_string();
    assert!(shown.contains(&old_id), "{shown}");
    assert!(!shown.contains(&old) && !shown.contains(&other), "{shown}");
}

async fn watch_changes_calls_back_on_writes_from_any_replica(b: &Backend) {
    let (writer, watched) = (b.open(key()).await, Arc::new(b.open(key()).await));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = segment_connections::store::watch_changes(
        watched.clone(),
        Duration::from_millis(100),
        move |v| {
            let _ = tx.send(v);
        },
    );
    let until = async |rx: &mut tokio::sync::mpsc::UnboundedReceiver<u64>, v: u64| {
        tokio::time::timeout(Duration::from_secs(10), async {
            while rx.recv().await.unwrap() < v {}
        })
        .await
        .unwrap_or_else(|_| panic!("version {v} not seen"))
    };
    // Through the watched store itself (both backends)…
    watched
        .create_destination(new_destination("one", "k"))
        .await
        .unwrap();
    until(&mut rx, watched.catalog_version().await.unwrap()).await;
    // …and through another (PostgreSQL: another replica; SQLite's feed only knows its own
    // writes, so this part is PostgreSQL's).
    if let Backend::Postgres(_) = b {
        writer
            .create_destination(new_destination("two", "k"))
            .await
            .unwrap();
        until(&mut rx, writer.catalog_version().await.unwrap()).await;
    }
    task.abort();
}

// === PostgreSQL only ===

mod postgres_only {
    use super::*;

    async fn db() -> Option<TestDb> {
        TestDb::create().await
    }

    /// Replicas starting at the same moment on an empty database: one migrates, the others wait
    /// on the advisory lock and find nothing to do.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_starting_together_migrate_once() {
        let Some(db) = db().await else { return };
        let starts = (0..6).map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move {
                PostgresStore::connect(&url, KeyRing::from_hex_lines(key()).unwrap()).await
            })
        });
        let stores: Vec<PostgresStore> = futures_join(starts).await;
        assert_eq!(stores.len(), 6);
        let mut conn = db.connect().await;
        let (applied,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
            .unwrap()
            .count();
        assert_eq!(applied as usize, files);
        // And they all work on the one schema.
        stores[0]
            .create_destination(new_destination("x", "k"))
            .await
            .unwrap();
        assert_eq!(stores[5].list_destinations().await.unwrap().len(), 1);
    }

    async fn futures_join(
        tasks: impl Iterator<Item = tokio::task::JoinHandle<Result<PostgresStore, StoreError>>>,
    ) -> Vec<PostgresStore> {
        let mut out = Vec::new();
        for t in tasks.collect::<Vec<_>>() {
            out.push(t.await.unwrap().unwrap());
        }
        out
    }

    /// Waits until `rx` announces at least `version`; returns how long that took.
    async fn until_seen(rx: &mut tokio::sync::broadcast::Receiver<u64>, version: u64) -> Duration {
        let start = Instant::now();
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match rx.recv().await {
                    Ok(v) if v >= version => return,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("version {version} not seen within 10 s"));
        start.elapsed()
    }

    fn options(poll: Duration) -> PostgresOptions {
        PostgresOptions {
            poll_interval: poll,
            ..PostgresOptions::default()
        }
    }

    /// A write on one replica reaches another by NOTIFY (polling set too slow to explain it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_on_one_replica_is_announced_on_another() {
        let Some(db) = db().await else { return };
        let ring = || KeyRing::from_hex_lines(key()).unwrap();
        let a = PostgresStore::connect_with(&db.url, ring(), options(Duration::from_secs(3600)))
            .await
            .unwrap();
        let b = PostgresStore::connect_with(&db.url, ring(), options(Duration::from_secs(3600)))
            .await
            .unwrap();
        let mut rx = b.subscribe_changes().unwrap();
        // Let the first poll (at start) pass and the listener subscribe.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut lags = Vec::new();
        for i in 0..20 {
            let started = Instant::now();
            a.create_destination(new_destination(&format!("d{i}"), "k"))
                .await
                .unwrap();
            let v = a.catalog_version().await.unwrap();
            until_seen(&mut rx, v).await;
            lags.push(started.elapsed());
        }
        lags.sort();
        println!(
            "notify propagation, write to other replica's feed: median {:?}, max {:?}",
            lags[lags.len() / 2],
            lags[lags.len() - 1]
        );
    }

    /// A change made without a notification (lost) is still picked up, by polling.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn polling_covers_lost_notifications() {
        let Some(db) = db().await else { return };
        // The default poll interval: what a replica gets when notifications are lost.
        let b = PostgresStore::connect(&db.url, KeyRing::from_hex_lines(key()).unwrap())
            .await
            .unwrap();
        let mut rx = b.subscribe_changes().unwrap();
        let mut conn = db.connect().await;
        let (v,): (i64,) =
            sqlx::query_as("UPDATE catalog SET version = version + 1 RETURNING version")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        let lag = until_seen(&mut rx, v as u64).await;
        println!(
            "polling (every {:?}) picked up a silent change after {lag:?}",
            PostgresOptions::default().poll_interval
        );
    }

    /// A writer stuck holding the change-version row (its replica vanished mid-transaction)
    /// makes other writes fail retryably after the lock timeout, not hang; reads go on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_writer_makes_writes_unavailable_not_hang() {
        let Some(db) = db().await else { return };
        let s = PostgresStore::connect_with(
            &db.url,
            KeyRing::from_hex_lines(key()).unwrap(),
            PostgresOptions {
                lock_timeout: Duration::from_secs(1),
                ..PostgresOptions::default()
            },
        )
        .await
        .unwrap();
        let d = s
            .create_destination(new_destination("d", "k"))
            .await
            .unwrap();
        let mut stuck = db.connect().await;
        sqlx::query("BEGIN").execute(&mut stuck).await.unwrap();
        sqlx::query("UPDATE catalog SET version = version + 1")
            .execute(&mut stuck)
            .await
            .unwrap();
        let started = Instant::now();
        let err = s
            .create_destination(new_destination("e", "k"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(s.get_destination(&d.id).await.unwrap(), d);
        sqlx::query("ROLLBACK").execute(&mut stuck).await.unwrap();
        s.create_destination(new_destination("e", "k"))
            .await
            .unwrap();
    }

    /// The listener's connection is killed: it reconnects, and changes keep arriving.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_keep_arriving_after_the_listener_reconnects() {
        let Some(db) = db().await else { return };
        let ring = || KeyRing::from_hex_lines(key()).unwrap();
        let slow = || options(Duration::from_secs(3600));
        let a = PostgresStore::connect_with(&db.url, ring(), slow())
            .await
            .unwrap();
        let b = PostgresStore::connect_with(&db.url, ring(), slow())
            .await
            .unwrap();
        let mut rx = b.subscribe_changes().unwrap();
        let mut conn = db.connect().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (listening,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap();
            if listening >= 2 {
                break;
            }
            assert!(Instant::now() < deadline, "listeners not up within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (killed,): (i64,) = sqlx::query_as(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert!(killed >= 2, "killed {killed} listeners");
        // Give the listener a moment to notice and reconnect, then write.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        a.create_destination(new_destination("after", "k"))
            .await
            .unwrap();
        let v = a.catalog_version().await.unwrap();
        until_seen(&mut rx, v).await;
    }
}
