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
    /// The server to call: HOST:PORT (plaintext, or TLS with --ca-file/--cert-file),
    /// http://HOST:PORT or https://HOST:PORT.
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
    /// The connection failed (on connecting or during a call) with this error chain: told apart
    /// by [`diagnose`] before it is reported, as [`Failure::Unreachable`].
    Transport(String),
    /// Stopped by Ctrl-C (SIGINT): exit 130, as a shell reports a command it interrupted.
    Interrupted(String),
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Failure {
        // A status the server sent has no source; one made by the client's transport has.
        if let Some(source) = std::error::Error::source(&s) {
            let source = chain(source);
            Failure::Transport(if source.contains(s.message()) {
                source
            } else {
                format!("{}: {source}", s.message())
            })
        } else {
            Failure::Server(s)
        }
    }
}

/// An error and its sources, joined with ": " (repeats left out).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(e) = next {
        // One line, whatever a source writes.
        let text = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

impl Failure {
    /// Prints the failure on stderr (as JSON with `--json`) and gives the exit code.
    pub(crate) fn report(self, json: bool) -> ExitCode {
        let (code, doc, text) = match self {
            Failure::Usage(m) => (2, json!({"error": {"code": "USAGE", "message": m}}), m),
            Failure::Unreachable(m) | Failure::Transport(m) => (
                1,
                json!({"error": {"code": "UNAVAILABLE", "message": m}}),
                m,
            ),
            Failure::Interrupted(m) => (
                130,
                json!({"error": {"code": "CANCELLED", "message": m}}),
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

/// What `--server` names: the URI to connect to and whether it is TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub uri: String,
    pub tls: bool,
}

/// `--server` as a URI: `HOST:PORT` gets `http://`, or `https://` when TLS files are given;
/// `http://` and `https://` are kept; anything else is a usage error saying what is expected.
pub(crate) fn target(args: &ClientArgs) -> Result<Target, Failure> {
    let given = args.server.trim();
    let expected = || {
        Failure::Usage(format!(
            "--server {:?}: expected HOST:PORT, http://HOST:PORT or https://HOST:PORT \
             (e.g. 127.0.0.1:50051)",
            args.server
        ))
    };
    let tls_files = args.ca_file.is_some() || args.cert_file.is_some();
    let uri = if given.starts_with("http://") || given.starts_with("https://") {
        given.to_owned()
    } else if given.contains("://") {
        return Err(expected());
    } else if tls_files {
        format!("https://{given}")
    } else {
        format!("http://{given}")
    };
    let parsed: http::Uri = uri.parse().map_err(|_| expected())?;
    let authority = parsed.authority().ok_or_else(expected)?;
    if authority.host().is_empty()
        || authority.as_str().contains('@')
        || !matches!(parsed.path(), "" | "/")
        || parsed.query().is_some()
    {
        return Err(expected());
    }
    let tls = uri.starts_with("https://") || args.ca_file.is_some();
    Ok(Target { uri, tls })
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
    let channel = channel(args, Duration::from_secs(5)).await?;
    Ok(ConnectionsClient::with_interceptor(
        channel,
        BearerToken(token),
    ))
}

/// A channel to `--server` (with TLS when it is https:// or `--ca-file` is given), connecting
/// within `connect_timeout`.
pub(crate) async fn channel(
    args: &ClientArgs,
    connect_timeout: Duration,
) -> Result<tonic::transport::Channel, Failure> {
    let target = target(args)?;
    let mut endpoint = Endpoint::from_shared(target.uri.clone())
        .map_err(|e| Failure::Usage(format!("--server {:?}: {e}", args.server)))?
        .connect_timeout(connect_timeout);
    if target.tls {
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
    endpoint
        .connect()
        .await
        .map_err(|e| Failure::Transport(chain(&e)))
}

/// What answers on a port, from the first bytes it sends back to an HTTP/2 preface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// Nothing listens (connection refused).
    Refused,
    /// A plaintext HTTP/2 server (a SETTINGS or GOAWAY frame).
    PlainHttp2,
    /// A TLS server (a TLS record: an alert or a handshake).
    Tls,
    /// An HTTP/1 server (`HTTP/1.x ...`).
    Http1,
    /// Something else, or nothing in time.
    Unknown,
}

impl Peer {
    /// Reads the first bytes a server answered.
    pub(crate) fn of(first: &[u8]) -> Peer {
        if first.starts_with(b"HTTP/") {
            Peer::Http1
        } else if first.len() >= 2 && matches!(first[0], 0x15 | 0x16) && first[1] == 0x03 {
            Peer::Tls
        } else if first.len() >= 4 && matches!(first[3], 0x04 | 0x07) {
            Peer::PlainHttp2
        } else {
            Peer::Unknown
        }
    }
}

/// Connects to the server's port once more, plaintext, sends an HTTP/2 preface and reads what
/// comes back (for at most two seconds each).
async fn probe(uri: &str) -> Peer {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let Ok(parsed) = uri.parse::<http::Uri>() else {
        return Peer::Unknown;
    };
    let Some(host) = parsed.host() else {
        return Peer::Unknown;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = parsed.port_u16().unwrap_or(match parsed.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    let limit = Duration::from_secs(2);
    let mut stream =
        match tokio::time::timeout(limit, tokio::net::TcpStream::connect((host.as_str(), port)))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Peer::Refused;
            }
            _ => return Peer::Unknown,
        };
    // The client preface and an empty SETTINGS frame.
    let hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    if stream.write_all(hello).await.is_err() {
        return Peer::Unknown;
    }
    let mut first = Vec::new();
    let mut buf = [0u8; 64];
    let deadline = tokio::time::Instant::now() + limit;
    while first.len() < 5 {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => first.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    Peer::of(&first)
}

/// A connection failure told apart: one line naming the cause and what to do.
pub(crate) fn explain(target: &Target, peer: Peer, error: &str) -> String {
    let Target { uri, tls } = target;
    let authority = uri
        .split_once("://")
        .map_or(uri.as_str(), |(_, rest)| rest.trim_end_matches('/'));
    match (peer, tls) {
        (Peer::Refused, _) => format!(
            "cannot reach the server at {uri}: connection refused (nothing listens on \
             {authority}); start `segment-connections serve` there or correct --server"
        ),
        (Peer::Http1, _) => format!(
            "the server at {uri} answers HTTP/1, not gRPC (HTTP/2): point --server at the \
             service's gRPC port (serve's --listen, default 50051), not a web or metrics port"
        ),
        (Peer::Tls, false) => format!(
            "TLS mismatch: the server at {uri} uses TLS but the client spoke plaintext; use \
             --server https://{authority} (with --ca-file if its CA is not a public one)"
        ),
        (Peer::PlainHttp2, true) => format!(
            "TLS mismatch: the server at {uri} does not use TLS but the client spoke TLS; use \
             --server http://{authority} without --ca-file, --cert-file and --key-file"
        ),
        (Peer::Tls, true) => format!(
            "TLS handshake with the server at {uri} failed ({error}); check --ca-file (the CA \
             that signed its certificate) and, if it requires one, --cert-file and --key-file"
        ),
        _ => format!("cannot reach the server at {uri}: {error}"),
    }
}

/// Whether a failed call may pass if made again, and the wait the server asked for (zero when it
/// named none): UNAVAILABLE; RESOURCE_EXHAUSTED when the server said when to retry (a busy
/// server; without RetryInfo it is a limit that a retry meets again); a connection that broke
/// during a call; a connection that could not be made because nothing answers on the port (yet).
/// `None` for the rest, and for a port where the wrong kind of server answers (HTTP/1, the other
/// side of TLS, a failed handshake): waiting does not mend those.
pub(crate) async fn retry_delay(
    args: &ClientArgs,
    failure: &Failure,
    connecting: bool,
) -> Option<Duration> {
    use tonic_types::StatusExt as _;
    match failure {
        Failure::Server(status) => {
            let asked = status
                .get_details_retry_info()
                .and_then(|r| r.retry_delay)
                .or_else(|| {
                    let ms = status.metadata().get("grpc-retry-pushback-ms")?;
                    ms.to_str().ok()?.parse().ok().map(Duration::from_millis)
                });
            match status.code() {
                tonic::Code::Unavailable => Some(asked.unwrap_or_default()),
                tonic::Code::ResourceExhausted => asked,
                _ => None,
            }
        }
        Failure::Transport(_) if !connecting => Some(Duration::ZERO),
        Failure::Transport(_) => {
            let target = target(args).ok()?;
            match (probe(&target.uri).await, target.tls) {
                (Peer::Refused | Peer::Unknown, _) | (Peer::PlainHttp2, false) => {
                    Some(Duration::ZERO)
                }
                _ => None,
            }
        }
        Failure::Usage(_) | Failure::Unreachable(_) | Failure::Interrupted(_) => None,
    }
}

/// Turns a transport failure into the message that names its cause.
async fn diagnose(args: &ClientArgs, failure: Failure) -> Failure {
    let Failure::Transport(error) = failure else {
        return failure;
    };
    let Ok(target) = target(args) else {
        return Failure::Unreachable(format!("cannot reach the server: {error}"));
    };
    let peer = probe(&target.uri).await;
    Failure::Unreachable(explain(&target, peer, &error))
}

/// Runs a client command on a fresh runtime and turns its outcome into an exit code (a
/// connection failure told apart first).
pub(crate) fn run<F>(args: &ClientArgs, command: F) -> ExitCode
where
    F: std::future::Future<Output = Result<ExitCode, Failure>>,
{
    let json = args.json;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return Failure::Usage(format!("starting the runtime: {e}")).report(json),
    };
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(f) => runtime.block_on(diagnose(args, f)).report(json),
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

#[cfg(test)]
mod tests {
    use super::{ClientArgs, Failure, Peer, Target, explain, target};

    fn args(server: &str, ca: bool) -> ClientArgs {
        ClientArgs {
            server: server.into(),
            json: false,
            token: None,
            ca_file: ca.then(|| "ca.pem".into()),
            cert_file: None,
            key_file: None,
        }
    }

    #[test]
    fn server_values() {
        for (given, ca, uri, tls) in [
            ("127.0.0.1:50051", false, "http://127.0.0.1:50051", false),
            ("127.0.0.1:50051", true, "https://127.0.0.1:50051", true),
            ("[::1]:50051", false, "http://[::1]:50051", false),
            ("localhost:1", false, "http://localhost:1", false),
            ("http://127.0.0.1:1", false, "http://127.0.0.1:1", false),
            (
                "https://h.example:443/",
                false,
                "https://h.example:443/",
                true,
            ),
        ] {
            let t = target(&args(given, ca)).unwrap();
            assert_eq!(
                t,
                Target {
                    uri: uri.into(),
                    tls
                },
                "{given}"
            );
        }
        for bad in [
            "",
            "not a url",
            "ftp://h:1",
            "h:1/x",
            "http://u@h:1",
            "h:1?q",
        ] {
            match target(&args(bad, false)) {
                Err(Failure::Usage(m)) => assert!(m.contains("expected HOST:PORT"), "{m}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn what_is_retried_and_after_how_long() {
        use super::retry_delay;
        use std::time::Duration;
        use tonic::Code;
        use tonic_types::{ErrorDetails, StatusExt as _};

        let a = args("127.0.0.1:9", false);
        let with_delay = |code| {
            Failure::Server(tonic::Status::with_error_details(
                code,
                "busy",
                ErrorDetails::with_retry_info(Some(Duration::from_millis(1500))),
            ))
        };
        let plain = |code| Failure::Server(tonic::Status::new(code, "no"));
        assert_eq!(
            retry_delay(&a, &with_delay(Code::Unavailable), false).await,
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_delay(&a, &with_delay(Code::ResourceExhausted), false).await,
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_delay(&a, &plain(Code::Unavailable), false).await,
            Some(Duration::ZERO)
        );
        // A limit without a delay: a retry meets it again.
        assert_eq!(
            retry_delay(&a, &plain(Code::ResourceExhausted), false).await,
            None
        );
        for code in [Code::NotFound, Code::InvalidArgument, Code::Internal] {
            assert_eq!(
                retry_delay(&a, &with_delay(code), false).await,
                None,
                "{code:?}"
            );
        }
        // A stream that broke is retried; so is a connection refused (nothing on port 9).
        let broken = Failure::Transport("broken pipe".into());
        assert_eq!(retry_delay(&a, &broken, false).await, Some(Duration::ZERO));
        assert_eq!(retry_delay(&a, &broken, true).await, Some(Duration::ZERO));
        assert_eq!(
            retry_delay(&a, &Failure::Usage("x".into()), false).await,
            None
        );
    }

    #[test]
    fn peers_from_their_first_bytes() {
        assert_eq!(Peer::of(b"HTTP/1.1 400 Bad Request\r\n"), Peer::Http1);
        assert_eq!(Peer::of(b"\x15\x03\x03\x00\x02\x02\x32"), Peer::Tls);
        assert_eq!(
            Peer::of(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00"),
            Peer::PlainHttp2
        );
        assert_eq!(Peer::of(b""), Peer::Unknown);
        assert_eq!(Peer::of(b"SSH-2.0-OpenSSH"), Peer::Unknown);
    }

    #[test]
    fn every_explanation_is_one_line() {
        for tls in [false, true] {
            let t = Target {
                uri: "http://127.0.0.1:9".into(),
                tls,
            };
            for peer in [
                Peer::Refused,
                Peer::PlainHttp2,
                Peer::Tls,
                Peer::Http1,
                Peer::Unknown,
            ] {
                let m = explain(&t, peer, "transport error: boom");
                assert!(!m.contains('\n') && m.contains("127.0.0.1:9"), "{m}");
            }
        }
    }
}
