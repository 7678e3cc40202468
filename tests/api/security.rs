//! Caller authentication (bearer tokens), TLS and mTLS on the gRPC port, the plaintext health
//! port, and the client commands' `--token`, `--ca-file`, `--cert-file`/`--key-file`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::common::app::TestApp;
use segment_connections::config::TlsFiles;
use segment_connections::grpc::proto::{self, ConnectionsClient};

use crate::common::bin::BIN;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

async fn with_tokens(tokens: &[&str]) -> TestApp {
    let tokens: Vec<_> = tokens
        .iter()
        .map(|t| segment_connections::config::KeyText(t.to_string()))
        .collect();
    TestApp::spawn_with(Arc::new(tempfile::tempdir().unwrap()), |s| {
        s.auth_tokens = tokens;
    })
    .await
}

async fn list(app: &TestApp, token: Option<&str>) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(proto::ListDestinationsRequest {});
    if let Some(t) = token {
        request
            .metadata_mut()
            .insert("authorization", t.parse().unwrap());
    }
    app.client
        .clone()
        .list_destinations(request)
        .await
        .map(|_| ())
}

async fn health(channel: Channel) -> i32 {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: proto::SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

/// Runs the binary off the runtime, without the caller's SEGMENT_CONNECTIONS_* variables.
async fn cli(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(BIN);
        cmd.args(&args);
        for (k, _) in std::env::vars() {
            if k.starts_with("SEGMENT_CONNECTIONS_") {
                cmd.env_remove(k);
            }
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn every_rpc_but_health_needs_one_of_the_tokens() {
    let app = with_tokens(&["old-token", "new-token"]).await;
    for token in [
        None,
        Some("Bearer wrong"),
        Some("old-token"),
        Some("Basic old-token"),
    ] {
        let err = list(&app, token).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{token:?}: {err:?}");
    }
    // Either token works: rotation without downtime.
    list(&app, Some("Bearer old-token")).await.unwrap();
    list(&app, Some("Bearer new-token")).await.unwrap();
    // Health needs none (kubelet probes carry no credentials).
    assert_eq!(
        health(app.channel().await).await,
        ServingStatus::Serving as i32
    );
    // Reflection does.
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    let err = ServerReflectionClient::new(app.channel().await)
        .server_reflection_info(tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
}

#[tokio::test]
async fn client_commands_send_the_token() {
    let app = with_tokens(&["s3cret-token"]).await;
    let out = cli(args(&[
        "destinations",
        "list",
        "--json",
        "--server",
        &app.url(),
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("UNAUTHENTICATED"), "{stderr}");
    let out = cli(args(&[
        "destinations",
        "list",
        "--json",
        "--server",
        &app.url(),
        "--token",
        "s3cret-token",
    ]))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn with_tls(client_ca: bool) -> TestApp {
    TestApp::spawn_with(Arc::new(tempfile::tempdir().unwrap()), |s| {
        s.tls = Some(TlsFiles {
            cert: fixture("server.pem"),
            key: fixture("server.key"),
            client_ca: client_ca.then(|| fixture("ca.pem")),
        });
        s.health_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
}

async fn tls_channel(app: &TestApp, identity: bool) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem("ca.pem")))
        .domain_name("localhost");
    if identity {
        tls = tls.identity(Identity::from_pem(pem("client.pem"), pem("client.key")));
    }
    Channel::from_shared(format!("https://localhost:{}", app.addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

#[tokio::test]
async fn tls_serves_the_api_and_a_plaintext_health_port() {
    let app = with_tls(false).await;
    let channel = tls_channel(&app, false).await.unwrap();
    ConnectionsClient::new(channel.clone())
        .list_destinations(proto::ListDestinationsRequest {})
        .await
        .unwrap();
    assert_eq!(health(channel).await, ServingStatus::Serving as i32);
    // Plaintext on the TLS port fails.
    assert!(list(&app, None).await.is_err());
    // Kubelet's probes use the plaintext health port.
    let health_port = Channel::from_shared(format!("http://{}", app.health_addr.unwrap()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_eq!(
        health(health_port.clone()).await,
        ServingStatus::Serving as i32
    );
    // It serves health only.
    let err = ConnectionsClient::new(health_port)
        .list_destinations(proto::ListDestinationsRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");

    // The CLI with --ca-file.
    let server = format!("https://localhost:{}", app.addr.port());
    let ca = fixture("ca.pem").to_string_lossy().into_owned();
    let out = cli(args(&[
        "destinations",
        "list",
        "--server",
        &server,
        "--ca-file",
        &ca,
    ]))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the CA the server's certificate is not trusted.
    let out = cli(args(&["destinations", "list", "--server", &server])).await;
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_from_the_ca() {
    let app = with_tls(true).await;
    let without = match tls_channel(&app, false).await {
        // The handshake may succeed lazily; the call must not.
        Ok(channel) => ConnectionsClient::new(channel)
            .list_destinations(proto::ListDestinationsRequest {})
            .await
            .is_err(),
        Err(_) => true,
    };
    assert!(without, "a client without a certificate was served");
    let channel = tls_channel(&app, true).await.unwrap();
    ConnectionsClient::new(channel)
        .list_destinations(proto::ListDestinationsRequest {})
        .await
        .unwrap();

    let server = format!("https://localhost:{}", app.addr.port());
    let f = |n: &str| fixture(n).to_string_lossy().into_owned();
    let out = cli(args(&[
        "destinations",
        "list",
        "--server",
        &server,
        "--ca-file",
        &f("ca.pem"),
        "--cert-file",
        &f("client.pem"),
        "--key-file",
        &f("client.key"),
    ]))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(args(&[
        "destinations",
        "list",
        "--server",
        &server,
        "--ca-file",
        &f("ca.pem"),
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn the_health_command_speaks_tls_and_mtls() {
    let f = |n: &str| fixture(n).to_string_lossy().into_owned();
    let app = with_tls(false).await;
    let server = format!("https://localhost:{}", app.addr.port());
    let out = cli(args(&[
        "health",
        "--server",
        &server,
        "--ca-file",
        &f("ca.pem"),
    ]))
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the CA the server's certificate is not trusted.
    let out = cli(args(&["health", "--server", &server])).await;
    assert_eq!(out.status.code(), Some(1));

    let app = with_tls(true).await;
    let server = format!("https://localhost:{}", app.addr.port());
    let with_cert = [
        "--cert-file",
        &f("client.pem"),
        "--key-file",
        &f("client.key"),
    ];
    let out = cli(args(
        &[
            &["health", "--server", &server, "--ca-file", &f("ca.pem")][..],
            &with_cert,
        ]
        .concat(),
    ))
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without a client certificate the server does not answer.
    let out = cli(args(&[
        "health",
        "--server",
        &server,
        "--ca-file",
        &f("ca.pem"),
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1));
    // Health needs no token, even where every other call does.
    let app = with_tokens(&["a-token"]).await;
    let out = cli(args(&["health", "--server", &app.url()])).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_missing_certificate_stops_start_up_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::common::app::settings(dir.path().into());
    settings.tls = Some(TlsFiles {
        cert: dir.path().join("nope.pem"),
        key: fixture("server.key"),
        client_ca: None,
    });
    let app = segment_connections::app::App::build(settings)
        .await
        .unwrap();
    let err = app.run(std::future::pending()).await.unwrap_err();
    let shown = format!("{err:#}");
    assert!(shown.contains("nope.pem"), "{shown}");
}

// === Write keys and upstreams ===

fn update_region(id: &str, version: u64, region: &str) -> proto::UpdateDestinationRequest {
    proto::UpdateDestinationRequest {
        id: id.into(),
        version,
        region: Some(region.into()),
        ..Default::default()
    }
}

/// One order row through a track mapping: the result's status and issues.
async fn submit_one(app: &TestApp, destination_id: &str) -> proto::RowResult {
    let mut r = crate::submit_rows::submit(
        app,
        crate::submit_rows::request(
            destination_id,
            vec![crate::common::app::order_row("o-1", "u-1")],
        ),
    )
    .await;
    assert_eq!(r.results.len(), 1, "{r:?}");
    r.results.remove(0)
}

#[tokio::test]
async fn moving_a_destination_to_another_host_needs_its_write_key() {
    use crate::common::fake_segment::FakeSegment;
    let key = "wk-first-0123456789";
    let (home, elsewhere) = (FakeSegment::start(key).await, FakeSegment::start(key).await);
    let app = TestApp::spawn().await;
    let mut c = app.client.clone();
    let d = app.create_destination_at("prod", &home.url(), key).await;
    app.create_mapping(&d.id, &crate::common::app::track_mapping("orders"))
        .await;

    // Another port of an allowed host, us, eu: each is another host for the key.
    for region in [elsewhere.url(), "us".into(), "eu".into()] {
        let err = c
            .update_destination(update_region(&d.id, 1, &region))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{region}: {err:?}");
        let v = crate::common::app::violations(&err);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].0, "write_key");
        assert!(v[0].1.contains("another host"), "{v:?}");
        assert!(!err.message().contains(key));
    }
    // The same host, spelled with `/v1`: no key needed (and, `/v1` stripped, the same base URL:
    // nothing changes, the version included).
    let moved = c
        .update_destination(update_region(&d.id, 1, &format!("{}/v1", home.url())))
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert_eq!(moved.version, 1);
    let r = submit_one(&app, &d.id).await;
    assert_eq!(r.status, proto::ResultStatus::Delivered as i32, "{r:?}");
    assert_eq!(home.accepted().len(), 1);
    assert!(
        elsewhere.requests().is_empty(),
        "the key went to the other host"
    );

    // With the key in the same request it moves, and the new key goes there.
    c.update_destination(proto::UpdateDestinationRequest {
        write_key: Some(key.into()),
        ..update_region(&d.id, 1, &elsewhere.url())
    })
    .await
    .unwrap();
    let r = submit_one(&app, &d.id).await;
    assert_eq!(r.status, proto::ResultStatus::Delivered as i32, "{r:?}");
    assert_eq!((home.accepted().len(), elsewhere.accepted().len()), (1, 1));

    // A stale version is ABORTED, not a key error.
    let err = c
        .update_destination(update_region(&d.id, 1, "us"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
}

#[tokio::test]
async fn custom_base_urls_need_their_host_allowed() {
    let app = TestApp::spawn().await;
    let mut c = app.client.clone();
    let refused = |err: tonic::Status| {
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        let v = crate::common::app::violations(&err);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].0, "region");
        assert!(v[0].1.contains("--allowed-upstreams"), "{v:?}");
        assert!(v[0].1.contains("anywhere.example"), "{v:?}");
    };
    let err = c
        .create_destination(proto::CreateDestinationRequest {
            name: "x".into(),
            region: "http://anywhere.example:8080".into(),
            write_key: "wk-x-0123456789".into(),
            enabled: None,
            rate_limit: None,
        })
        .await
        .unwrap_err();
    refused(err);
    assert!(
        c.list_destinations(proto::ListDestinationsRequest {})
            .await
            .unwrap()
            .into_inner()
            .destinations
            .is_empty()
    );
    let d = app.create_destination("prod").await;
    // Even with the write key.
    let err = c
        .update_destination(proto::UpdateDestinationRequest {
            write_key: Some("wk-x-0123456789".into()),
            ..update_region(&d.id, 1, "http://anywhere.example")
        })
        .await
        .unwrap_err();
    refused(err);
    // User info in a base URL would hide the host.
    let err = c
        .update_destination(proto::UpdateDestinationRequest {
            write_key: Some("wk-x-0123456789".into()),
            ..update_region(&d.id, 1, "http://anywhere.example@127.0.0.1")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
}

#[tokio::test]
async fn a_stored_host_no_longer_allowed_gets_no_write_key() {
    use crate::common::fake_segment::FakeSegment;
    let key = "wk-stored-0123456789";
    let fake = FakeSegment::start(key).await;
    let app = TestApp::spawn().await;
    let d = app.create_destination_at("prod", &fake.url(), key).await;
    app.create_mapping(&d.id, &crate::common::app::track_mapping("orders"))
        .await;
    let dir = app.stop().await;

    // Restarted with the host no longer listed.
    let app = TestApp::spawn_with(dir, |s| {
        s.delivery.allowed_upstreams = Default::default();
    })
    .await;
    for _ in 0..2 {
        let r = submit_one(&app, &d.id).await;
        assert_eq!(r.status, proto::ResultStatus::Rejected as i32, "{r:?}");
        assert_eq!(r.issues.len(), 1, "{r:?}");
        assert_eq!(
            r.issues[0].code,
            proto::IssueCode::UpstreamNotAllowed as i32
        );
        assert!(r.issues[0].message.contains("--allowed-upstreams"));
        assert!(!r.retryable);
    }
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}
