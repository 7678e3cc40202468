//! PostgreSQL stops under a running server: calls that need it fail with UNAVAILABLE, nothing
//! crashes, and once it is back the server recovers by itself.

use std::time::{Duration, Instant};

use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::common::fake_segment::FakeSegment;
use crate::common::pg::Cluster;
use crate::common::serve::{Server, create_destination, track_mapping};
use segment_connections::grpc::proto;
use segment_connections::store::KeyRing;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_unavailable_while_postgres_is_down_and_recover_after() {
    // Its own cluster (the shared one must stay up for the other tests); run only where the
    // PostgreSQL tests run.
    if !crate::common::pg::have_pg_bin() {
        return;
    }
    let cluster = Cluster::start();
    let key = KeyRing::generate_hex().unwrap();
    let mut server = Server::start(&cluster.url(), &key, "info,segment_connections=debug").await;
    let mut c = server.client();
    let fake = FakeSegment::start("wk-outage-0123").await;
    let d = create_destination(&mut c, "prod", &fake.url(), "wk-outage-0123").await;
    let m = c
        .create_mapping(proto::CreateMappingRequest {
            destination_id: d.id.clone(),
            mapping_json: track_mapping("orders", "Order Completed"),
        })
        .await
        .unwrap()
        .into_inner()
        .mapping
        .unwrap();

    let submit = |id: &str| proto::SubmitRowsRequest {
        destination_id: d.id.clone(),
        model: "orders".into(),
        rows: vec![crate::common::serve::order_row(id)],
        ..Default::default()
    };
    let delivered = |r: proto::SubmitRowsResponse| r.counts.map(|c| c.delivered);
    // The row path has read the destination and its mapping once.
    let first = c
        .submit_rows(submit("o-before"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(delivered(first), Some(1));

    cluster.pause();
    let started = Instant::now();
    let test_mapping = proto::TestMappingRequest {
        mapping: Some(proto::test_mapping_request::Mapping::MappingId(
            m.id.clone(),
        )),
        destination_id: None,
        rows: vec![crate::common::serve::order_row("o-1")],
    };
    let (mut c1, mut c2, mut c3, mut c4, mut c5, mut c6, mut c7, mut c8, mut c9, mut c10, mut c11) = (
        c.clone(),
        c.clone(),
        c.clone(),
        c.clone(),
        c.clone(),
        c.clone(),
        c.clone(),
        c.clone(),
        c.clone(),
        c.clone(),
        c.clone(),
    );
    let (r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11) = tokio::join!(
        c1.list_destinations(proto::ListDestinationsRequest {}),
        c2.get_destination(proto::GetDestinationRequest { id: d.id.clone() }),
        c3.create_destination(proto::CreateDestinationRequest {
            name: "other".into(),
            region: "us".into(),
            write_key: "wk-other-0123".into(),
            enabled: None,
            rate_limit: None,
        }),
        c4.update_destination(proto::UpdateDestinationRequest {
            id: d.id.clone(),
            version: d.version,
            name: Some("renamed".into()),
            region: None,
            write_key: None,
            enabled: None,
            rate_limit: None,
        }),
        c5.delete_destination(proto::DeleteDestinationRequest { id: d.id.clone() }),
        c6.list_mappings(proto::ListMappingsRequest {
            destination_id: d.id.clone()
        }),
        c7.get_mapping(proto::GetMappingRequest { id: m.id.clone() }),
        c8.create_mapping(proto::CreateMappingRequest {
            destination_id: d.id.clone(),
            mapping_json: track_mapping("other", "Other"),
        }),
        c9.update_mapping(proto::UpdateMappingRequest {
            id: m.id.clone(),
            version: m.version,
            mapping_json: track_mapping("orders", "Changed"),
        }),
        c10.delete_mapping(proto::DeleteMappingRequest { id: m.id.clone() }),
        c11.test_mapping(test_mapping.clone()),
    );
    let codes = [
        ("ListDestinations", r1.map(|_| ()).unwrap_err().code()),
        ("GetDestination", r2.map(|_| ()).unwrap_err().code()),
        ("CreateDestination", r3.map(|_| ()).unwrap_err().code()),
        ("UpdateDestination", r4.map(|_| ()).unwrap_err().code()),
        ("DeleteDestination", r5.map(|_| ()).unwrap_err().code()),
        ("ListMappings", r6.map(|_| ()).unwrap_err().code()),
        ("GetMapping", r7.map(|_| ()).unwrap_err().code()),
        ("CreateMapping", r8.map(|_| ()).unwrap_err().code()),
        ("UpdateMapping", r9.map(|_| ()).unwrap_err().code()),
        ("DeleteMapping", r10.map(|_| ()).unwrap_err().code()),
        ("TestMapping", r11.map(|_| ()).unwrap_err().code()),
    ];
    for (rpc, code) in codes {
        assert_eq!(code, Code::Unavailable, "{rpc}");
    }
    println!(
        "outage: 11 calls answered UNAVAILABLE within {:?}",
        started.elapsed()
    );
    // Still up, still serving what needs no database.
    assert!(server.is_running());
    let mut health = HealthClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    let inline = c
        .test_mapping(proto::TestMappingRequest {
            mapping: Some(proto::test_mapping_request::Mapping::MappingJson(
                track_mapping("inline", "Inline"),
            )),
            destination_id: None,
            rows: vec![crate::common::serve::order_row("o-1")],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(inline.results[0].accepted);
    // Rows keep flowing: the row path delivers from what it last read.
    let during = c
        .submit_rows(submit("o-during"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(delivered(during), Some(1));
    assert_eq!(fake.accepted().len(), 2);
    // A destination the row path has never read: the wait on the store ends before the call's
    // deadline, with UNAVAILABLE, not the caller's DEADLINE_EXCEEDED.
    let mut uncached = tonic::Request::new(proto::SubmitRowsRequest {
        destination_id: "dst_never_read".into(),
        ..submit("o-uncached")
    });
    uncached.set_timeout(Duration::from_secs(1));
    let refused = c.submit_rows(uncached).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");

    // Back: the same server recovers by itself.
    cluster.resume();
    let back = Instant::now();
    let deadline = back + Duration::from_secs(60);
    loop {
        match c.list_destinations(proto::ListDestinationsRequest {}).await {
            Ok(r) => {
                assert_eq!(r.into_inner().destinations.len(), 1);
                break;
            }
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "{s:?}");
                assert!(Instant::now() < deadline, "no recovery within 60 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    println!(
        "outage: calls succeed again {:?} after PostgreSQL restarted",
        back.elapsed()
    );
    assert!(server.is_running());
    // Writes work, nothing was half-done, and the change feed is back.
    let updated = c
        .update_mapping(proto::UpdateMappingRequest {
            id: m.id.clone(),
            version: m.version,
            mapping_json: track_mapping("orders", "Changed"),
        })
        .await
        .unwrap()
        .into_inner()
        .mapping
        .unwrap();
    assert_eq!(updated.version, m.version + 1);
    create_destination(&mut c, "other", "us", "wk-other-0123").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server
        .log()
        .iter()
        .any(|l| l.contains("listening for store changes again"))
    {
        assert!(
            Instant::now() < deadline,
            "the change listener did not come back: {:?}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = server.stop().await;
    assert!(!log.iter().any(|l| l.contains("panicked")), "{log:?}");
}
