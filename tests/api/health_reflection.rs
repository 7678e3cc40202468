//! Health, reflection, the declared-but-unimplemented row RPCs, the request size limit.

use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::common::app::{MAX_REQUEST_BYTES, TestApp};
use segment_connections::grpc::proto;

#[tokio::test]
async fn health_is_serving_for_the_service_and_overall() {
    let app = TestApp::spawn().await;
    let mut health = HealthClient::new(app.channel().await);
    for service in ["", proto::SERVICE_NAME] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
}

#[tokio::test]
async fn health_reports_not_serving_during_shutdown() {
    let app = TestApp::spawn().await;
    let mut health = HealthClient::new(app.channel().await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: proto::SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap().status;
    assert_eq!(first, ServingStatus::Serving as i32);
    let stopping = tokio::spawn(app.stop());
    let next = watch.next().await.unwrap().unwrap().status;
    assert_eq!(next, ServingStatus::NotServing as i32);
    // With the watch closed nothing is in flight: the server stops without using up its grace
    // period (5 s in tests; a stream left open would hold it that long).
    drop(watch);
    tokio::time::timeout(std::time::Duration::from_secs(4), stopping)
        .await
        .expect("stops before the grace period is over")
        .unwrap();
}

#[tokio::test]
async fn reflection_v1_lists_the_service_and_health() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

    let app = TestApp::spawn().await;
    let mut client = ServerReflectionClient::new(app.channel().await);
    let ask = |r: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(r),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(
                "segment_connections.v1.Connections".into(),
            )),
            // Error details can be decoded by reflection-based clients.
            ask(MessageRequest::FileContainingSymbol(
                "google.rpc.BadRequest".into(),
            )),
        ]))
        .await
        .unwrap()
        .into_inner();
    let ServerReflectionResponse {
        message_response, ..
    } = answers.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = message_response else {
        panic!("{message_response:?}")
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    // Only our service and health are advertised.
    assert_eq!(names, ["grpc.health.v1.Health", proto::SERVICE_NAME]);
    let ServerReflectionResponse {
        message_response, ..
    } = answers.next().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = message_response else {
        panic!("{message_response:?}")
    };
    assert!(!files.file_descriptor_proto.is_empty());
    let ServerReflectionResponse {
        message_response, ..
    } = answers.next().await.unwrap().unwrap();
    assert!(
        matches!(
            message_response,
            Some(MessageResponse::FileDescriptorResponse(_))
        ),
        "{message_response:?}"
    );
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_service() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let app = TestApp::spawn().await;
    let mut client = ServerReflectionClient::new(app.channel().await);
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("{answer:?}")
    };
    assert!(list.service.iter().any(|s| s.name == proto::SERVICE_NAME));
}

#[tokio::test]
async fn row_rpcs_refuse_a_request_without_a_destination() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let err = client
        .submit_rows(proto::SubmitRowsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let header = proto::StreamRowsRequest {
        message: Some(proto::stream_rows_request::Message::Header(
            proto::StreamHeader::default(),
        )),
    };
    let err = client
        .stream_rows(tokio_stream::iter([header]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
}

#[tokio::test]
async fn a_request_over_the_size_limit_is_out_of_range() {
    let app = TestApp::spawn().await;
    let err = app
        .client
        .clone()
        .create_mapping(proto::CreateMappingRequest {
            destination_id: "dst_x".into(),
            mapping_json: "x".repeat(MAX_REQUEST_BYTES + 1),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
}
