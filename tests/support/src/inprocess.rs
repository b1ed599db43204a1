//! The services started in-process on free ports (tracing on, as configured by default: their
//! spans go to whatever subscriber the test process installed, none unless a test does), and
//! small fakes of the
//! network around them: a TCP proxy that can cut the database off, and calendar stand-ins that
//! fail or hang.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tutorial_common::config::Env;

use crate::http::{send, Reply};

/// A notes server running inside the test process.
pub struct NotesApp {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The database it uses (directly, for checks).
    pub db_url: String,
    /// A plain HTTP client.
    pub client: reqwest::Client,
}

impl NotesApp {
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base, path_and_query)
    }

    /// Sends a request to this server.
    pub async fn send(&self, method: &str, path_and_query: &str) -> Reply {
        send(&self.client, method, &self.url(path_and_query), &[]).await
    }

    /// The same, asking for JSON.
    pub async fn send_json(&self, method: &str, path_and_query: &str) -> Reply {
        send(
            &self.client,
            method,
            &self.url(path_and_query),
            &[("Accept", "application/json")],
        )
        .await
    }

    /// The rows of the notes table, ordered by id.
    pub async fn rows(&self) -> Vec<(i32, String)> {
        if let Some(path) = crate::store::sqlite_path(&self.db_url) {
            return tokio::task::spawn_blocking(move || crate::store::sqlite_rows(&path))
                .await
                .expect("reading the SQLite file");
        }
        let client = crate::connect(&self.db_url).await;
        client
            .query("SELECT id, description FROM notes ORDER BY id", &[])
            .await
            .expect("reading the notes table")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }
}

/// Starts a notes server with `DATABASE_URL=db_url`, `CALENDAR_URL=calendar_url`, no helper
/// delay, plus `extra` settings.
pub async fn spawn_notes(db_url: &str, calendar_url: &str, extra: &[(&str, &str)]) -> NotesApp {
    let mut env = Env::from_pairs([
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("DATABASE_URL", db_url),
        ("CALENDAR_URL", calendar_url),
        ("NOTES_HELPER_DELAY_SCALE", "0"),
        ("WORKERS", "2"),
    ]);
    for (k, v) in extra {
        env = env.with(*k, *v);
    }
    let settings = notes::Settings::from_env(&env).expect("valid test settings");
    let app = notes::Application::build(settings)
        .await
        .expect("notes builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    NotesApp {
        base,
        db_url: db_url.to_string(),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
    }
}

/// Starts a calendar server; returns its base URL.
pub async fn spawn_calendar() -> String {
    spawn_calendar_with(&[]).await
}

/// Starts a calendar server with `extra` settings; returns its base URL.
pub async fn spawn_calendar_with(extra: &[(&str, &str)]) -> String {
    let mut env = Env::from_pairs([("HOST", "127.0.0.1"), ("PORT", "0"), ("WORKERS", "1")]);
    for (k, v) in extra {
        env = env.with(*k, *v);
    }
    let settings = <calendar::Settings as tutorial_common::server::ServiceSettings>::from_env(&env)
        .expect("valid test settings");
    let app = calendar::Application::build(settings)
        .await
        .expect("calendar builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    base
}

/// A URL where nothing listens (a port bound then released).
pub fn closed_url() -> String {
    format!("http://127.0.0.1:{}", crate::free_port())
}

/// A calendar stand-in that answers every request with `status` and `body`.
pub async fn fake_calendar(status: u16, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

/// A calendar stand-in that accepts connections and never answers.
pub async fn hanging_calendar() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    format!("http://{addr}")
}

/// A TCP proxy in front of a server, which a test can cut (every connection dropped, new
/// ones refused) and restore on the same port: a database outage without stopping PostgreSQL.
/// It can also freeze (connections stay open but no byte moves: a hung server or network).
pub struct TcpProxy {
    /// The port clients connect to.
    pub port: u16,
    upstream: String,
    state: Arc<Mutex<ProxyState>>,
    frozen: tokio::sync::watch::Sender<bool>,
}

struct ProxyState {
    acceptor: Option<JoinHandle<()>>,
    connections: Vec<JoinHandle<()>>,
}

/// Copies one direction, pausing while the proxy is frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !*f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl TcpProxy {
    /// Starts a proxy to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let proxy = TcpProxy {
            port,
            upstream: upstream.to_string(),
            state: Arc::new(Mutex::new(ProxyState {
                acceptor: None,
                connections: Vec::new(),
            })),
            frozen: tokio::sync::watch::channel(false).0,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        let state = self.state.clone();
        let frozen = self.frozen.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let frozen = frozen.subscribe();
                let task = tokio::spawn(async move {
                    let mut gate = frozen.clone();
                    if gate.wait_for(|f| !*f).await.is_err() {
                        return;
                    }
                    if let Ok(outbound) = TcpStream::connect(&upstream).await {
                        let (ir, iw) = inbound.into_split();
                        let (or, ow) = outbound.into_split();
                        tokio::join!(pump(ir, ow, frozen.clone()), pump(or, iw, frozen));
                    }
                });
                if let Ok(mut s) = state.lock() {
                    s.connections.push(task);
                }
            }
        });
        if let Ok(mut s) = self.state.lock() {
            s.acceptor = Some(acceptor);
        }
    }

    /// Drops every connection and stops listening (new connections are refused).
    pub async fn cut(&self) {
        if let Ok(mut s) = self.state.lock() {
            if let Some(a) = s.acceptor.take() {
                a.abort();
            }
            for c in s.connections.drain(..) {
                c.abort();
            }
        }
        // Let the aborted tasks drop their sockets (and the listener) before returning.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// Keeps every connection open but moves no byte, in either direction, until thawed.
    pub fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }

    /// Listens again on the same port.
    pub async fn restore(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => return self.serve(listener),
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("cannot listen on proxy port {} again: {e}", self.port)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// `postgres://…@host:port/db` → (`host:port`, a function to rewrite the URL to another port).
pub fn url_host_port(url: &str) -> (String, String) {
    let after_at = url.rsplit_once('@').map(|(_, r)| r).unwrap_or(url);
    let host_port = after_at.split('/').next().unwrap_or("").to_string();
    let db = after_at
        .split_once('/')
        .map(|(_, d)| d)
        .unwrap_or("")
        .to_string();
    (host_port, db)
}

/// The same database URL, reached through a proxy on `port`.
pub fn via_port(url: &str, port: u16) -> String {
    let (host_port, _) = url_host_port(url);
    url.replacen(&host_port, &format!("127.0.0.1:{port}"), 1)
}

/// A notes server whose database sits behind a [`TcpProxy`] (for outages), plus the proxy.
pub async fn spawn_notes_behind_proxy(extra: &[(&str, &str)]) -> (NotesApp, TcpProxy) {
    let db = crate::fresh_database().await;
    let (host_port, _) = url_host_port(&db);
    let proxy = TcpProxy::start(&host_port).await;
    let mut app = spawn_notes(&via_port(&db, proxy.port), &spawn_calendar().await, extra).await;
    // Checks go straight to the database, not through the proxy.
    app.db_url = db;
    (app, proxy)
}

impl NotesApp {
    /// Polls `GET path` until it answers 200 (the service recovered); returns the body.
    pub async fn wait_for_ok(&self, path: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let reply = self.send("GET", path).await;
            if reply.status == 200 {
                return reply.body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "GET {path} did not recover within {timeout:?}: {} {}",
                reply.status,
                reply.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
