//! `health`: asks a running server's `grpc.health.v1.Health/Check` about one service and exits
//! 0 only when it is SERVING; otherwise 1 with one line on stderr saying why (NOT_SERVING, an
//! unknown service, a server that cannot be reached or does not answer in time), 2 on a usage or
//! file error. The chart's `helm test` Pod runs it from the service's own image.
//!
//! It takes `--server` and the TLS flags (and their environment variables) as the other client
//! commands do; no token, as health needs none.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::cli::client::{self, Failure};
use crate::grpc::proto;

/// The flags of `health`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// The server to ask.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// The service to ask about; "" asks about the server as a whole.
    #[arg(long, default_value = proto::SERVICE_NAME)]
    pub service: String,
    /// The CA certificate (PEM) that signed the server's certificate; implies TLS (use an
    /// https:// --server).
    #[arg(long, env = "SEGMENT_CONNECTIONS_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for a server that requires one (mTLS); needs --key-file.
    #[arg(long, env = "SEGMENT_CONNECTIONS_CERT_FILE", requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM) of --cert-file.
    #[arg(long, env = "SEGMENT_CONNECTIONS_KEY_FILE", requires = "cert_file")]
    pub key_file: Option<PathBuf>,
    /// How long to wait for the answer, connecting included.
    #[arg(long, default_value_t = 5)]
    pub timeout_seconds: u64,
}

/// Runs `health`: exit 0 when the service is SERVING, 1 when not (or unreachable), 2 on a usage
/// error.
pub fn run(args: HealthArgs) -> ExitCode {
    client::run(false, check(args))
}

async fn check(args: HealthArgs) -> Result<ExitCode, Failure> {
    let timeout = Duration::from_secs(args.timeout_seconds.max(1));
    let shown = if args.service.is_empty() {
        "the server".to_owned()
    } else {
        args.service.clone()
    };
    let endpoint = endpoint(&args, timeout)?;
    let ask = async {
        let channel = endpoint.connect().await.map_err(|e| {
            Failure::Unreachable(format!(
                "cannot reach the server at {}: {}",
                args.server,
                chain(&e)
            ))
        })?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: args.service.clone(),
            })
            .await?;
        Ok::<_, Failure>(answer.into_inner().status)
    };
    let status = tokio::time::timeout(timeout, ask).await.map_err(|_| {
        Failure::Unreachable(format!(
            "{} did not answer a health check within {} s",
            args.server,
            timeout.as_secs()
        ))
    })??;
    let status = ServingStatus::try_from(status).unwrap_or(ServingStatus::Unknown);
    if status == ServingStatus::Serving {
        println!("{shown} at {} is SERVING", args.server);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {shown} at {} is {}",
            args.server,
            status.as_str_name()
        );
        Ok(ExitCode::from(1))
    }
}

/// `--server` with TLS when it is https:// or `--ca-file` is given (as the other client
/// commands connect).
fn endpoint(args: &HealthArgs, timeout: Duration) -> Result<Endpoint, Failure> {
    let mut endpoint = Endpoint::from_shared(args.server.clone())
        .map_err(|e| Failure::Usage(format!("--server {:?}: {e}", args.server)))?
        .connect_timeout(timeout);
    if args.server.starts_with("https://") || args.ca_file.is_some() {
        let mut tls = ClientTlsConfig::new();
        match &args.ca_file {
            Some(ca) => tls = tls.ca_certificate(Certificate::from_pem(client::read_file(ca)?)),
            None => tls = tls.with_native_roots(),
        }
        if let (Some(cert), Some(key)) = (&args.cert_file, &args.key_file) {
            tls = tls.identity(Identity::from_pem(
                client::read_file(cert)?,
                client::read_file(key)?,
            ));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Failure::Usage(format!("TLS settings: {e}")))?;
    }
    Ok(endpoint)
}

/// An error and its sources, `: `-separated, each once (tonic's own text is only "transport
/// error"; hyper's repeats itself).
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}
