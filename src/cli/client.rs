//! What every client command shares: `--server`/`--json`, the connection, printing, exit codes.

use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::grpc::proto::{self, ConnectionsClient};

/// Flags of every client command (each also an environment variable).
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The server to call.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub server: String,
    /// Print JSON (each resource with its `id`) instead of text.
    #[arg(long, env = "SEGMENT_CONNECTIONS_JSON", global = true)]
    pub json: bool,
    /// A bearer token for a server that requires one (sent as `authorization: Bearer ...`).
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The CA certificate (PEM) that signed the server's certificate; implies TLS (use an
    /// https:// --server).
    #[arg(long, env = "SEGMENT_CONNECTIONS_CA_FILE", global = true)]
    pub ca_file: Option<std::path::PathBuf>,
    /// A client certificate (PEM) for a server that requires one (mTLS); needs --key-file.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_CERT_FILE",
        global = true,
        requires = "key_file"
    )]
    pub cert_file: Option<std::path::PathBuf>,
    /// The private key (PEM) of --cert-file.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_KEY_FILE",
        global = true,
        requires = "cert_file"
    )]
    pub key_file: Option<std::path::PathBuf>,
}

/// Why a client command failed, and so its exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A usage, I/O or file error (exit 2).
    Usage(String),
    /// The server answered an error (exit 1).
    Server(tonic::Status),
    /// The server could not be reached (exit 1).
    Unreachable(String),
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Failure {
        Failure::Server(s)
    }
}

impl Failure {
    /// Prints the failure on stderr (as JSON with `--json`) and gives the exit code.
    pub(crate) fn report(self, json: bool) -> ExitCode {
        let (code, doc, text) = match self {
            Failure::Usage(m) => (2, json!({"error": {"code": "USAGE", "message": m}}), m),
            Failure::Unreachable(m) => (
                1,
                json!({"error": {"code": "UNAVAILABLE", "message": m}}),
                m,
            ),
            Failure::Server(status) => {
                use tonic_types::StatusExt as _;
                let violations: Vec<Value> = status
                    .get_details_bad_request()
                    .map(|b| {
                        b.field_violations
                            .into_iter()
                            .map(|v| json!({"field": v.field, "description": v.description}))
                            .collect()
                    })
                    .unwrap_or_default();
                let code = code_name(status.code());
                let mut doc = json!({"error": {"code": code, "message": status.message()}});
                if !violations.is_empty() {
                    doc["error"]["violations"] = Value::Array(violations);
                }
                (1, doc, format!("{code}: {}", status.message()))
            }
        };
        if json {
            eprintln!("{doc}");
        } else {
            eprintln!("error: {text}");
        }
        ExitCode::from(code)
    }
}

/// The canonical name of a gRPC code (`NOT_FOUND`).
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A client of the service that sends `--token`, if any, with every call.
pub(crate) type Client = ConnectionsClient<InterceptedService<Channel, BearerToken>>;

/// Adds `authorization: Bearer <token>` to each call (when there is a token).
#[derive(Clone)]
pub(crate) struct BearerToken(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

/// Connects to `--server` (with TLS when it is https:// or `--ca-file` is given).
pub(crate) async fn connect(args: &ClientArgs) -> Result<Client, Failure> {
    let token = match &args.token {
        None => None,
        Some(t) => Some(
            format!("Bearer {}", t.trim())
                .parse::<MetadataValue<Ascii>>()
                .map_err(|_| Failure::Usage("--token: not a valid header value".into()))?,
        ),
    };
    let mut endpoint = Endpoint::from_shared(args.server.clone())
        .map_err(|e| Failure::Usage(format!("--server {:?}: {e}", args.server)))?
        .connect_timeout(Duration::from_secs(5));
    if args.server.starts_with("https://") || args.ca_file.is_some() {
        let mut tls = ClientTlsConfig::new();
        match &args.ca_file {
            Some(ca) => tls = tls.ca_certificate(Certificate::from_pem(read_file(ca)?)),
            None => tls = tls.with_native_roots(),
        }
        if let (Some(cert), Some(key)) = (&args.cert_file, &args.key_file) {
            tls = tls.identity(Identity::from_pem(read_file(cert)?, read_file(key)?));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Failure::Usage(format!("TLS settings: {e}")))?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        Failure::Unreachable(format!("cannot reach the server at {}: {e}", args.server))
    })?;
    Ok(ConnectionsClient::with_interceptor(
        channel,
        BearerToken(token),
    ))
}

/// Runs a client command on a fresh runtime and turns its outcome into an exit code.
pub(crate) fn run<F>(json: bool, command: F) -> ExitCode
where
    F: std::future::Future<Output = Result<ExitCode, Failure>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return Failure::Usage(format!("starting the runtime: {e}")).report(json),
    };
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(f) => f.report(json),
    }
}

/// Reads a file the command was given (a failure is a usage error).
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))
}

/// Prints `value` as pretty JSON.
pub(crate) fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

// === Resources as JSON ===

/// A destination as the CLI prints it: never a write key, only its fingerprint.
pub(crate) fn destination_json(d: &proto::Destination) -> Value {
    let proto::Destination {
        id,
        name,
        region,
        write_key_fingerprint,
        enabled,
        version,
    } = d;
    json!({
        "id": id,
        "name": name,
        "region": region,
        "enabled": enabled,
        "version": version,
        "write_key_fingerprint": write_key_fingerprint,
    })
}

/// A mapping as the CLI prints it, its document as JSON.
pub(crate) fn mapping_json(m: &proto::Mapping) -> Value {
    let proto::Mapping {
        id,
        destination_id,
        name,
        model,
        enabled,
        version,
        mapping_json,
    } = m;
    let doc = serde_json::from_str::<Value>(mapping_json)
        .unwrap_or_else(|_| Value::String(mapping_json.clone()));
    json!({
        "id": id,
        "destination_id": destination_id,
        "name": name,
        "model": model,
        "enabled": enabled,
        "version": version,
        "mapping": doc,
    })
}
