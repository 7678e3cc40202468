//! The store under faults, through the real binary and over real sockets: secrets in store URLs
//! stay out of start-up errors.

use segment_connections::store::KeyRing;

use crate::cli::{cli, text};

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
