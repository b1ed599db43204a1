//! Running an actix-web service: settings shared by both services, request limits, the bound
//! server and its graceful stop ([`Server::run_until_stopped`], given the shutdown as a future),
//! why start-up failed ([`StartError`]), the container health check ([`healthcheck`]), and the
//! process `main` ([`run_main`]: the signals, and the exit status it hands back to `main`).

use crate::config::{ConfigError, Env};
use crate::error::error_chain;
use actix_http::Request;
use actix_service::{IntoServiceFactory, Service, ServiceFactory};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{AppConfig, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::HttpServer;
use datadog_otel_tracing::{Config as TracingConfig, HttpTracing, InitError, Pipeline};
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::time::Duration;

/// How a service listens, and the limits it enforces on clients.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// `HOST` (default `0.0.0.0`): the address to listen on.
    pub host: String,
    /// `PORT` (0 picks a free port).
    pub port: u16,
    /// `WORKERS` (default: one per CPU core): actix-web worker threads.
    pub workers: Option<usize>,
    /// `SHUTDOWN_TIMEOUT_S` (default 5): how long requests in flight may take after SIGTERM.
    pub shutdown_timeout: Duration,
    /// Request limits.
    pub limits: RequestLimits,
    /// `CLIENT_REQUEST_TIMEOUT_MS` (default 5000): a client must send its request head in time.
    pub client_request_timeout: Duration,
    /// `KEEP_ALIVE_S` (default 5): idle keep-alive connections are closed after this.
    pub keep_alive: Duration,
    /// `MAX_CONNECTIONS` (default 25000): concurrent connections per worker.
    pub max_connections: usize,
    /// `TRACE_HEALTH_CHECKS` (default false): trace `GET /health` too (see [`HEALTH_PATH`]).
    pub trace_health_checks: bool,
}

/// The path of the health check (`GET /health`), which the container health checks and
/// orchestrators' probes call every few seconds. Its requests are not traced unless
/// `TRACE_HEALTH_CHECKS=true`: one trace every 5 s per service would bury the traces a learner
/// sends (with a real Agent, `DD_APM_IGNORE_RESOURCES="GET /health"` drops them there instead).
pub const HEALTH_PATH: &str = "/health";

impl ServerSettings {
    /// The HTTP tracing settings of the service's `App` (its app data): the redaction and header
    /// tags of `tracing`, and [`HEALTH_PATH`] untraced unless `TRACE_HEALTH_CHECKS`.
    pub fn http_tracing(&self, tracing: &TracingConfig) -> HttpTracing {
        let http = HttpTracing::from_config(tracing);
        match self.trace_health_checks {
            true => http,
            false => http.untraced_path(HEALTH_PATH),
        }
    }
}

/// Limits on what a request may carry (beyond them: a clear 4xx, before any handler runs).
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// `MAX_URL_BYTES` (default 8192): a longer path + query gets 414.
    pub max_url_bytes: usize,
    /// `MAX_HEADER_BYTES` (default 16384): headers larger in total get 431.
    pub max_header_bytes: usize,
}

impl ServerSettings {
    /// Reads the settings, with the service's `default_port`.
    pub fn from_env(env: &Env, default_port: u16) -> Result<Self, ConfigError> {
        let workers = match env.get("WORKERS") {
            None => None,
            Some(_) => Some(env.positive("WORKERS", 1)?),
        };
        Ok(Self {
            host: env.host("HOST", "0.0.0.0")?,
            port: env.port("PORT", default_port)?,
            workers,
            shutdown_timeout: Duration::from_secs(env.parse("SHUTDOWN_TIMEOUT_S", 5)?),
            limits: RequestLimits {
                max_url_bytes: env.positive("MAX_URL_BYTES", 8192)?,
                max_header_bytes: env.positive("MAX_HEADER_BYTES", 16384)?,
            },
            client_request_timeout: env.millis("CLIENT_REQUEST_TIMEOUT_MS", 5000)?,
            keep_alive: Duration::from_secs(env.positive("KEEP_ALIVE_S", 5)? as u64),
            max_connections: env.positive("MAX_CONNECTIONS", 25000)?,
            trace_health_checks: env.flag("TRACE_HEALTH_CHECKS", false)?,
        })
    }
}

/// Middleware enforcing [`RequestLimits`]: 414 for a long URL, 431 for large headers.
pub async fn enforce_limits<B: MessageBody>(
    limits: RequestLimits,
    request: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let url_bytes = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().len())
        .unwrap_or(0);
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    let refusal = if url_bytes > limits.max_url_bytes {
        Some((StatusCode::URI_TOO_LONG, "URI Too Long"))
    } else if header_bytes > limits.max_header_bytes {
        Some((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request Header Fields Too Large",
        ))
    } else {
        None
    };
    match refusal {
        Some((status, text)) => {
            let response = crate::http::Format::of(request.request()).text(status, "error", text);
            Ok(request.into_response(response).map_into_right_body())
        }
        None => next
            .call(request)
            .await
            .map(ServiceResponse::map_into_left_body),
    }
}

/// A bound, ready-to-run server.
pub struct Server {
    /// The address actually bound (the port is the OS's choice when `PORT=0`).
    address: SocketAddr,
    /// The actix-web server, not yet polled.
    server: actix_web::dev::Server,
}

impl Server {
    /// Binds the listener and builds the actix-web server around `factory` (an `App`).
    pub fn bind<F, I, S, B>(settings: &ServerSettings, factory: F) -> Result<Self, StartError>
    where
        F: Fn() -> I + Send + Clone + 'static,
        I: IntoServiceFactory<S, Request>,
        S: ServiceFactory<Request, Config = AppConfig> + 'static,
        S::Error: Into<actix_web::Error> + 'static,
        S::InitError: std::fmt::Debug,
        S::Response: Into<actix_http::Response<B>> + 'static,
        <S::Service as Service<Request>>::Future: 'static,
        S::Service: 'static,
        B: MessageBody + 'static,
    {
        let listen_error = |address: String| move |source| StartError::Listen { address, source };
        let configured = format!("{}:{}", settings.host, settings.port);
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .map_err(listen_error(configured.clone()))?;
        let address = listener.local_addr().map_err(listen_error(configured))?;
        let mut server = HttpServer::new(factory)
            .disable_signals()
            .shutdown_timeout(settings.shutdown_timeout.as_secs())
            .client_request_timeout(settings.client_request_timeout)
            .keep_alive(settings.keep_alive)
            .max_connections(settings.max_connections);
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        let server = server
            .listen(listener)
            .map_err(listen_error(address.to_string()))?
            .run();
        Ok(Self { address, server })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets requests in flight
    /// finish (within the shutdown timeout).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        tokio::spawn(async move {
            shutdown.await;
            handle.stop(true).await;
        });
        self.server.await
    }
}

/// Why a service could not start (or stopped serving on an error). Each variant keeps its
/// cause as its `source()`; [`run_main`] prints the whole chain, once, as one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting that cannot work (a bad value, a file that cannot be used): exit status 2.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Logging or tracing could not be installed: exit status 1 (a bad `RUST_LOG` is a
    /// [`StartError::Config`]).
    #[error("cannot set up logs and traces")]
    Telemetry(#[source] InitError),
    /// The tokio runtime could not be built: exit status 1.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// The port is taken, the address is not this host's, …: exit status 1.
    #[error("cannot listen on {address}")]
    Listen {
        /// The address asked for (or bound, once it is known).
        address: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped on an I/O error: exit status 1.
    #[error("the server failed")]
    Serve(#[source] std::io::Error),
    /// A service's own reason (notes' `BuildError`), kept whole with its sources: exit status 1.
    #[error(transparent)]
    Service(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl From<InitError> for StartError {
    /// A bad `RUST_LOG` stays a configuration error (exit 2, one line naming the variable).
    fn from(e: InitError) -> Self {
        match e {
            InitError::Config(config) => StartError::Config(config),
            other => StartError::Telemetry(other),
        }
    }
}

impl StartError {
    /// The process's exit status: 2 for a bad setting, 1 for anything else.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            StartError::Config(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// What [`run_main`] needs to know of a service's settings.
pub trait ServiceSettings: Sized + Send + 'static {
    /// Reads the settings from the environment.
    fn from_env(env: &Env) -> Result<Self, ConfigError>;
    /// How the service listens.
    fn server(&self) -> &ServerSettings;
    /// Its telemetry settings.
    fn telemetry(&self) -> &TracingConfig;
}

/// The whole `main` of a service: settings (a bad one is one line naming the variable, exit 2),
/// `healthcheck` subcommand, telemetry set up before the async runtime, serving until SIGTERM
/// or SIGINT, then the final flush of spans. `main` returns the exit status it gives: 0 after a
/// graceful stop, 130 when a second signal cut it short, [`StartError::exit_code`] when the
/// service could not start (its error chain on stderr, as one line, and in the logs).
pub fn run_main<S, F, E>(name: &str, build: fn(S) -> F) -> ExitCode
where
    S: ServiceSettings,
    F: Future<Output = Result<Server, E>>,
    E: Into<StartError>,
{
    match run(build) {
        Ok(Ended::Stopped) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        // As a shell reports a process ended by Ctrl-C.
        Ok(Ended::Interrupted) => ExitCode::from(130),
        Ok(Ended::HealthChecked(code)) => code,
        Err(e) => {
            let chain = error_chain(&e);
            tracing::error!(error = %chain, "{name} failed");
            eprintln!("{name}: {chain}");
            e.exit_code()
        }
    }
}

/// How [`run`] ended, short of an error.
enum Ended {
    /// Stopped by a signal: requests in flight finished, spans flushed.
    Stopped,
    /// A second signal came before the graceful stop was over.
    Interrupted,
    /// The `healthcheck` subcommand ran, with this result.
    HealthChecked(ExitCode),
}

/// [`run_main`] up to the exit status.
fn run<S, F, E>(build: fn(S) -> F) -> Result<Ended, StartError>
where
    S: ServiceSettings,
    F: Future<Output = Result<Server, E>>,
    E: Into<StartError>,
{
    let settings = S::from_env(&Env::from_process())?;
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return Ok(Ended::HealthChecked(healthcheck(settings.server().port)));
    }
    // Before the async runtime: the exporter's blocking HTTP client must not be built on it.
    let telemetry = Pipeline::build(settings.telemetry())?.install()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    let ended = runtime.block_on(async {
        let mut signals = Signals::new();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serve_then_flush = async move {
            let served = match build(settings).await {
                Ok(server) => {
                    tracing::info!(address = %server.address(), "listening");
                    server
                        .run_until_stopped(async move {
                            // A dropped sender (no signal handling left) also stops.
                            let _ = stopped.await;
                        })
                        .await
                        .map_err(StartError::Serve)
                }
                Err(e) => Err(e.into()),
            };
            // The final flush runs while the second-signal watcher below is alive, so a second
            // SIGTERM still ends the process at once.
            let flushed =
                tokio::task::spawn_blocking(move || telemetry.shutdown(FLUSH_TIMEOUT)).await;
            match flushed {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %error_chain(&e), "spans could not all be flushed at shutdown"),
                Err(_) => tracing::warn!("the final span flush did not complete"),
            }
            served.map(|()| Ended::Stopped)
        };
        let signalled = async move {
            signals.recv().await;
            tracing::info!("shutdown signal received: finishing requests in flight");
            let _ = stop.send(());
            signals.recv().await;
            tracing::warn!("second shutdown signal: exiting now");
        };
        tokio::select! {
            ended = serve_then_flush => ended,
            () = signalled => Ok(Ended::Interrupted),
        }
    });
    match ended {
        // Requests in flight and the flush are abandoned: they must not hold the exit.
        Ok(Ended::Interrupted) => runtime.shutdown_background(),
        _ => runtime.shutdown_timeout(Duration::from_secs(1)),
    }
    ended
}

/// Bound on the final span flush (an unreachable or stalled agent cannot hold shutdown longer).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// SIGTERM and SIGINT (Ctrl-C), listened to from start-up on.
struct Signals {
    /// Both Unix signals, or `None` where they cannot be listened to (then Ctrl-C through
    /// tokio's portable path).
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// Starts listening (inside the runtime).
    fn new() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let unix = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some((term, int)),
            _ => None,
        };
        Self { unix }
    }

    /// Resolves on the next SIGTERM or SIGINT.
    async fn recv(&mut self) {
        match &mut self.unix {
            Some((term, int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// The container health check: `GET /health` on the local port, exit status 0 when it answers
/// 200. Needs no curl in the image.
pub fn healthcheck(port: u16) -> std::process::ExitCode {
    use std::io::{Read, Write};
    let check = || -> std::io::Result<bool> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.") && &head[8..12] == b" 200")
    };
    match check() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("unhealthy: /health did not answer 200");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_checks_are_untraced_by_default_and_a_bad_flag_names_itself() {
        let settings = ServerSettings::from_env(&Env::default(), 8080).expect("defaults");
        assert!(!settings.trace_health_checks);
        let on = Env::from_pairs([("TRACE_HEALTH_CHECKS", "true")]);
        assert!(
            ServerSettings::from_env(&on, 8080)
                .expect("valid")
                .trace_health_checks
        );
        let bad = Env::from_pairs([("TRACE_HEALTH_CHECKS", "sometimes")]);
        let err = ServerSettings::from_env(&bad, 8080).expect_err("not a flag");
        assert!(err.to_string().contains("TRACE_HEALTH_CHECKS"), "{err}");
    }
}
