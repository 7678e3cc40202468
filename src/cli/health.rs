//! `health`: asks a running server's `grpc.health.v1.Health/Check` about one service and exits
//! 0 only when it is SERVING; otherwise 1 with one line on stderr saying why (NOT_SERVING, an
//! unknown service, a server that cannot be reached or does not answer in time), 2 on a usage or
//! file error. The chart's `helm test` Pod runs it from the service's own image.
//!
//! It takes `--server` and the TLS flags (and their environment variables) as the other client
//! commands do; no token, as health needs none.

use std::process::ExitCode;
use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::cli::client::{self, ClientArgs, Failure};
use crate::grpc::proto;

/// The flags of `health`: the client's (`--server`, the TLS files; a token is not needed), the
/// service, and how long to wait.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The service to ask about; "" asks about the server as a whole.
    #[arg(long, default_value = proto::SERVICE_NAME)]
    pub service: String,
    /// How long to wait for the answer, connecting included.
    #[arg(long, default_value_t = 5)]
    pub timeout_seconds: u64,
}

/// Runs `health`: exit 0 when the service is SERVING, 1 when not (or unreachable), 2 on a usage
/// error.
pub fn run(args: HealthArgs) -> ExitCode {
    client::run(&args.client.clone(), check(args))
}

async fn check(args: HealthArgs) -> Result<ExitCode, Failure> {
    let timeout = Duration::from_secs(args.timeout_seconds.max(1));
    let shown = if args.service.is_empty() {
        "the server".to_owned()
    } else {
        args.service.clone()
    };
    let server = &args.client.server;
    let ask = async {
        let channel = client::channel(&args.client, timeout).await?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: args.service.clone(),
            })
            .await?;
        Ok::<_, Failure>(answer.into_inner().status)
    };
    let status = tokio::time::timeout(timeout, ask).await.map_err(|_| {
        Failure::Unreachable(format!(
            "{server} did not answer a health check within {} s",
            timeout.as_secs()
        ))
    })??;
    let status = ServingStatus::try_from(status).unwrap_or(ServingStatus::Unknown);
    if status == ServingStatus::Serving {
        println!("{shown} at {server} is SERVING");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: {shown} at {server} is {}", status.as_str_name());
        Ok(ExitCode::from(1))
    }
}
