//! The store under faults, through the real binary and over real sockets: secrets in store URLs
//! stay out of start-up errors; a full volume fails writes (never acknowledging one it lost) and
//! leaves no broken key file; a bad key file is named with its fix.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use segment_connections::config::{Settings, StoreLocation};
use segment_connections::grpc::proto;
use segment_connections::store::KeyRing;
use tonic::{Code, Status};

use crate::common::app::{TestApp, track_mapping};
use crate::common::bin::{cli, cli_in, text};

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `serve` (and `keys rotate`) with each form of store URL pointing at a closed loopback port:
/// the start-up error names the host and port but never the password.
#[tokio::test]
async fn store_url_secrets_stay_out_of_start_up_errors() {
    let port = closed_port();
    let key = KeyRing::generate_hex().unwrap();
    let host = format!("127.0.0.1:{port}");
    // (the URL, its secrets, whether the error can name the host)
    let cases = [
        (
            format!("postgres://app:Hunter2pw@{host}/db"),
            vec!["Hunter2pw"],
            true,
        ),
        (
            format!("postgres://app:p@ssHunter3@{host}/db"),
            vec!["ssHunter3", "p@ss"],
            true,
        ),
        (
            format!("postgres://app@{host}/db?password=Hunter4pw"),
            vec!["Hunter4pw"],
            true,
        ),
        (
            format!("postgresql://app@{host}/db?sslmode=disable&sslpassword=Hunter5pw"),
            vec!["Hunter5pw"],
            true,
        ),
        // Unparsable (a `/` in the password): nothing but the scheme is shown.
        (
            format!("postgres://app:Hun/ter6pw@{host}/db"),
            vec!["Hun/ter6pw", "ter6pw"],
            false,
        ),
        // Not PostgreSQL: refused as a setting, redacted all the same.
        (
            format!("mysql://app:Hunter7pw@{host}/db"),
            vec!["Hunter7pw"],
            true,
        ),
    ];
    // Every run at once: each waits for its connection timeout.
    let runs = cases.iter().flat_map(|(url, _, _)| {
        let key = key.as_str();
        [
            (
                vec![
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--metrics-listen",
                    "off",
                    "--store",
                    url,
                ],
                vec![("SEGMENT_CONNECTIONS_ENCRYPTION_KEY", key)],
            ),
            (
                vec![
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--metrics-listen",
                    "off",
                ],
                vec![
                    ("SEGMENT_CONNECTIONS_ENCRYPTION_KEY", key),
                    ("SEGMENT_CONNECTIONS_STORE", url.as_str()),
                ],
            ),
            (
                vec!["keys", "rotate", "--store", url],
                vec![("SEGMENT_CONNECTIONS_ENCRYPTION_KEY", key)],
            ),
        ]
    });
    let outs = futures_util::future::join_all(
        runs.map(|(args, envs)| async move { cli(&args, &envs).await }),
    )
    .await;
    for ((url, secrets, names_host), outs) in cases.iter().zip(outs.chunks(3)) {
        for out in outs {
            let err = text(&out.stderr);
            assert!(!out.status.success(), "{url}: {err}");
            for secret in secrets {
                assert!(!err.contains(secret), "{url}: {err}");
            }
            if *names_host {
                assert!(err.contains(&host), "{url}: {err}");
                assert!(err.contains("[redacted]"), "{url}: {err}");
            } else {
                assert!(err.contains("not a valid URL"), "{url}: {err}");
            }
        }
    }
}

/// A tmpfs of `bytes`, mounted on a fresh temporary directory and unmounted on drop: a volume
/// that really fills up.
pub(crate) struct SmallVolume {
    dir: tempfile::TempDir,
}

impl SmallVolume {
    /// `None` (the test then skips, saying so) where this process may not mount (not root).
    pub(crate) fn mount(bytes: usize) -> Option<SmallVolume> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(SmallVolume { dir })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the volume to the last byte with a file of its own, returned (removing it frees
    /// the space).
    pub(crate) fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        for chunk in [64 * 1024, 4096, 1] {
            let bytes = vec![0u8; chunk];
            // Each write that succeeds takes at least a byte of a bounded volume.
            loop {
                match file.write(&bytes) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                    Err(e) => panic!("filling {}: {e}", path.display()),
                }
            }
        }
        path
    }
}

impl Drop for SmallVolume {
    fn drop(&mut self) {
        // Lazily: a server being dropped may still hold files open.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// Whether `status` is what a full store answers: RESOURCE_EXHAUSTED, saying so.
pub(crate) fn refused_as_full(status: &Status) -> bool {
    status.code() == Code::ResourceExhausted && status.message().starts_with("store full: ")
}

/// On a volume that fills up, a CreateDestination or CreateMapping that cannot be stored fails
/// (RESOURCE_EXHAUSTED, saying the store is full); every one answered OK is there, while
/// the volume is full and after a restart; once space is freed, writes succeed again.
#[tokio::test]
async fn a_write_on_a_full_volume_fails_and_every_acknowledged_write_is_kept() {
    let Some(volume) = SmallVolume::mount(2 << 20) else {
        return;
    };
    let store = volume.path().join("connections.db");
    let on_volume = move |s: &mut Settings| s.store = StoreLocation::Sqlite(store.clone());
    let app = TestApp::spawn_with(Arc::new(tempfile::tempdir().unwrap()), on_volume.clone()).await;
    let first = app.create_destination("first").await;
    let filler = volume.fill();

    let mut c = app.client.clone();
    let (mut destinations, mut mappings) = (vec![first.id.clone()], Vec::new());
    let (mut refused_destinations, mut refused_mappings) = (0, 0);
    for i in 0..40 {
        match c
            .create_destination(proto::CreateDestinationRequest {
                name: format!("d{i}"),
                region: "us".into(),
                write_key: format!("wk-full-{i}-0123456789"),
                enabled: None,
                rate_limit: None,
            })
            .await
        {
            Ok(r) => destinations.push(r.into_inner().destination.unwrap().id),
            Err(status) => {
                assert!(refused_as_full(&status), "{status:?}");
                refused_destinations += 1;
            }
        }
        match c
            .create_mapping(proto::CreateMappingRequest {
                destination_id: first.id.clone(),
                mapping_json: track_mapping(&format!("m{i}")),
            })
            .await
        {
            Ok(r) => mappings.push(r.into_inner().mapping.unwrap().id),
            Err(status) => {
                assert!(refused_as_full(&status), "{status:?}");
                refused_mappings += 1;
            }
        }
        // Enough that every pooled connection has seen a failed commit.
        if refused_destinations >= 8 && refused_mappings >= 8 {
            break;
        }
    }
    assert!(
        refused_destinations >= 8 && refused_mappings >= 8,
        "a full volume refused {refused_destinations} destinations, {refused_mappings} mappings"
    );
    check(&app, &destinations, &mappings).await;

    // Space freed, the same server stores again, on every connection (none is left holding a
    // transaction open that would swallow the next write).
    std::fs::remove_file(filler).unwrap();
    for i in 0..8 {
        mappings.push(
            app.create_mapping(&first.id, &track_mapping(&format!("after{i}")))
                .await
                .id,
        );
    }
    let dir = app.stop().await;
    let app = TestApp::spawn_with(dir, on_volume).await;
    check(&app, &destinations, &mappings).await;
}

/// Every one of `destinations` and `mappings` is there.
async fn check(app: &TestApp, destinations: &[String], mappings: &[String]) {
    let mut c = app.client.clone();
    for id in destinations {
        let got = c
            .get_destination(proto::GetDestinationRequest { id: id.clone() })
            .await;
        assert!(got.is_ok(), "acknowledged destination {id}: {got:?}");
    }
    for id in mappings {
        let got = c
            .get_mapping(proto::GetMappingRequest { id: id.clone() })
            .await;
        assert!(got.is_ok(), "acknowledged mapping {id}: {got:?}");
    }
}

/// A first start on a full volume fails naming the key file, and leaves none behind (no empty
/// key file that would fail every later start).
#[tokio::test]
async fn a_first_start_on_a_full_volume_leaves_no_key_file() {
    let Some(volume) = SmallVolume::mount(1 << 20) else {
        return;
    };
    volume.fill();
    let out = cli_in(
        Some(volume.path()),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
        ],
        &[],
    )
    .await;
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("data/master.key"), "{err}");
    assert!(err.contains("No space left"), "{err}");
    let data = volume.path().join("data");
    let left: Vec<_> = std::fs::read_dir(&data)
        .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", data.display());
}

/// A key file that is empty or holds no key: start-up fails naming the file and the fix, and
/// leaves the file as it was.
#[tokio::test]
async fn a_bad_key_file_is_named_with_its_fix() {
    for (content, says) in [
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("not-a-key\n", "line 1: expected 64 hex digits"),
    ] {
        for explicit in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("data")).unwrap();
            let key = dir.path().join("data/master.key");
            std::fs::write(&key, content).unwrap();
            let mut args = vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "off",
            ];
            if explicit {
                args.extend(["--encryption-key-file", "data/master.key"]);
            }
            let out = cli_in(Some(dir.path()), &args, &[]).await;
            let err = text(&out.stderr);
            assert!(!out.status.success(), "{err}");
            for needle in [
                "data/master.key",
                says,
                "restore it from your backup",
                "delete",
            ] {
                assert!(err.contains(needle), "{content:?}, {needle:?}: {err}");
            }
            assert_eq!(std::fs::read_to_string(&key).unwrap(), content);
            assert!(!dir.path().join("data/connections.db").exists());
        }
    }
}
