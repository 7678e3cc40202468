//! A whole scenario at debug log level: the write keys appear nowhere — not in the logs, not in
//! any response, not in a dump of the database.

use segment_connections::grpc::proto;
use segment_connections::store::KeyRing;

use crate::common::bin::{cli, text};
use crate::common::pg::TestDb;
use crate::common::serve::{Server, pg_dump, track_mapping};

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_key_is_nowhere_in_logs_responses_or_the_database() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    // pg_dump.
    if !crate::common::pg::have_pg_bin() {
        return;
    }
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).unwrap();
    let tag: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let first = format!("wkFirstSecret{tag}");
    let second = format!("wkSecondSecret{tag}");
    let refused = format!("wkRefusedSecret{tag}");
    let secrets = [first.as_str(), second.as_str(), refused.as_str()];

    let old_key = KeyRing::generate_hex().unwrap();
    // Everything at debug: ours, sqlx's statements, tonic, h2, hyper.
    let server = Server::start(&db.url, &old_key, "debug").await;
    let mut c = server.client();
    let mut responses: Vec<String> = Vec::new();

    let d = c
        .create_destination(proto::CreateDestinationRequest {
            name: "prod".into(),
            region: "us".into(),
            write_key: first.clone(),
            enabled: None,
            rate_limit: None,
        })
        .await
        .unwrap()
        .into_inner();
    responses.push(format!("{d:?}"));
    let d = d.destination.unwrap();
    // Refused requests carrying a write key: a taken name, a bad region.
    for (name, region) in [("prod", "us"), ("other", "nowhere")] {
        let err = c
            .create_destination(proto::CreateDestinationRequest {
                name: name.into(),
                region: region.into(),
                write_key: refused.clone(),
                enabled: None,
                rate_limit: None,
            })
            .await
            .unwrap_err();
        responses.push(format!("{err:?}"));
    }
    let updated = c
        .update_destination(proto::UpdateDestinationRequest {
            id: d.id.clone(),
            version: d.version,
            name: None,
            region: Some("eu".into()),
            write_key: Some(second.clone()),
            enabled: None,
            rate_limit: None,
        })
        .await
        .unwrap()
        .into_inner();
    responses.push(format!("{updated:?}"));
    // Stale: refused, with the write key in the request.
    let stale = c
        .update_destination(proto::UpdateDestinationRequest {
            id: d.id.clone(),
            version: d.version,
            name: None,
            region: None,
            write_key: Some(refused.clone()),
            enabled: None,
            rate_limit: None,
        })
        .await
        .unwrap_err();
    responses.push(format!("{stale:?}"));
    responses.push(format!(
        "{:?}",
        c.get_destination(proto::GetDestinationRequest { id: d.id.clone() })
            .await
            .unwrap()
    ));
    responses.push(format!(
        "{:?}",
        c.list_destinations(proto::ListDestinationsRequest {})
            .await
            .unwrap()
    ));
    let m = c
        .create_mapping(proto::CreateMappingRequest {
            destination_id: d.id.clone(),
            mapping_json: track_mapping("orders", "Order Completed"),
        })
        .await
        .unwrap()
        .into_inner();
    responses.push(format!("{m:?}"));
    responses.push(format!(
        "{:?}",
        c.test_mapping(proto::TestMappingRequest {
            mapping: Some(proto::test_mapping_request::Mapping::MappingId(
                m.mapping.unwrap().id
            )),
            destination_id: Some(d.id.clone()),
            rows: vec![crate::common::serve::order_row("o-1")],
        })
        .await
        .unwrap()
    ));

    // Rotate beside the running server, then restart it on the new key alone.
    let new_key = KeyRing::generate_hex().unwrap();
    let both = format!("{new_key}\n{old_key}\n");
    let rotate = cli(
        &["keys", "rotate", "--store", &db.url],
        &[("SEGMENT_CONNECTIONS_ENCRYPTION_KEY", &both)],
    )
    .await;
    assert!(rotate.status.success(), "{}", text(&rotate.stderr));
    responses.push(text(&rotate.stdout));
    responses.push(text(&rotate.stderr));
    let mut log = server.stop().await;
    let server = Server::start(&db.url, &new_key, "debug").await;
    responses.push(format!(
        "{:?}",
        server
            .client()
            .get_destination(proto::GetDestinationRequest { id: d.id.clone() })
            .await
            .unwrap()
    ));
    log.extend(server.stop().await);

    let log = log.join("\n");
    let responses = responses.join("\n");
    let dump = pg_dump(&db.url);
    // The checks are real: debug logs were on, the dump holds the destination, the responses
    // hold its fingerprint.
    assert!(log.contains("\"DEBUG\""), "no debug lines in the log");
    assert!(dump.contains(&d.id) && dump.contains("write_key_ciphertext"));
    assert!(responses.contains(&d.write_key_fingerprint));
    for secret in secrets {
        for (place, haystack) in [("log", &log), ("responses", &responses), ("dump", &dump)] {
            assert!(
                !haystack.contains(secret) && !haystack.contains(&hex(secret)),
                "a write key is in the {place}"
            );
        }
    }
    // Nor are the encryption keys.
    for key in [&old_key, &new_key] {
        for (place, haystack) in [("log", &log), ("responses", &responses), ("dump", &dump)] {
            assert!(
                !haystack.contains(key.as_str()),
                "an encryption key is in the {place}"
            );
        }
    }
    println!(
        "secrets: searched {} log bytes, {} response bytes, {} dump bytes",
        log.len(),
        responses.len(),
        dump.len()
    );
}
