//! A private PostgreSQL server per test binary, and a fresh database per test.
//!
//! The server is started on first use from the installed server binaries
//! (`initdb` and `postgres` on PATH, else the newest `/usr/lib/postgresql/*/bin`),
//! listens on a free loopback port with trust auth for user `postgres`, and is
//! stopped and its files removed when the test process exits. As root it runs
//! as the `postgres` user (else `nobody`), since initdb refuses root.
//! `TEST_DATABASE_URL` (a URL to a database whose user may CREATE DATABASE)
//! replaces the private server.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::process::{
    file_tail, free_port, is_root, lookup_user, private_temp_dir, Guarded, GuardedSpec,
};

const FIX: &str = "install the PostgreSQL server (Debian: `apt-get install postgresql`; \
`bash tests/run.sh` does it in CI), or set TEST_DATABASE_URL to a server where the user may \
CREATE DATABASE";

struct Server {
    /// URL of the maintenance database, used to create test databases.
    admin_url: String,
    /// Keeps the server's guard pipe open for the life of the process.
    _guard: Option<Guarded>,
}

static SERVER: OnceCell<Result<Server, String>> = OnceCell::const_new();

/// A new, empty database on the test server; returns its URL, e.g.
/// `postgres://postgres@127.0.0.1:PORT/t_1234_0_5f3a`. Panics with the fix when
/// PostgreSQL cannot be found or started.
pub async fn fresh_database() -> String {
    let server = SERVER
        .get_or_init(|| async {
            match std::env::var("TEST_DATABASE_URL") {
                Ok(url) if !url.trim().is_empty() => Ok(Server {
                    admin_url: url,
                    _guard: None,
                }),
                _ => start_server().await,
            }
        })
        .await;
    let server = match server {
        Ok(server) => server,
        Err(e) => panic!("test PostgreSQL unavailable: {e}"),
    };

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!(
        "t_{}_{}_{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );

    let admin = connect(&server.admin_url).await;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
        {
            Ok(()) => break,
            // Concurrent CREATE DATABASE can briefly find the template busy.
            Err(e) if attempt < 10 && e.to_string().contains("being accessed by other users") => {
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            Err(e) => panic!(
                "CREATE DATABASE {name} failed on {}: {e:?}",
                server.admin_url
            ),
        }
    }
    with_database(&server.admin_url, &name)
}

/// A connected client for `url` (its connection task runs on the current runtime).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    match try_connect(url).await {
        Ok(client) => client,
        Err(e) => panic!("cannot connect to test PostgreSQL at {url}: {e:?}"),
    }
}

async fn try_connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// `url` with its database (path) replaced by `db`; the query string is kept.
pub fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    match query {
        Some(q) => format!("{scheme}://{authority}/{db}?{q}"),
        None => format!("{scheme}://{authority}/{db}"),
    }
}

/// The directory holding `initdb` and `postgres`: PATH first, then the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn find_server_bindir() -> Result<PathBuf, String> {
    devkit::pg_bindir(&["initdb", "postgres"], devkit::Search::PathFirst).ok_or_else(|| {
        format!("no PostgreSQL server binaries (initdb, postgres) on PATH or under /usr/lib/postgresql/*/bin: {FIX}")
    })
}

async fn start_server() -> Result<Server, String> {
    let bindir = find_server_bindir()?;
    // initdb and postgres refuse to run as root: run them as an unprivileged user.
    let run_as = if is_root() {
        Some(
            lookup_user("postgres")
                .or_else(|| lookup_user("nobody"))
                .ok_or("running as root, and neither user `postgres` nor `nobody` exists to run PostgreSQL as")?,
        )
    } else {
        None
    };
    let mut last_error = String::new();
    // A port can be taken between choosing it and binding it: try a few.
    for _ in 0..3 {
        match start_attempt(&bindir, run_as).await {
            Ok(server) => return Ok(server),
            Err((e, retry)) => {
                last_error = e;
                if !retry {
                    break;
                }
            }
        }
    }
    Err(last_error)
}

async fn start_attempt(
    bindir: &Path,
    run_as: Option<(u32, u32)>,
) -> Result<Server, (String, bool)> {
    let fail = |e: String| (e, false);
    let base = private_temp_dir("apm-tutorial-pg");
    let remove_base = |e: String| {
        let _ = std::fs::remove_dir_all(&base);
        (e, false)
    };
    let data = base.join("data");
    let sockets = base.join("sockets");
    std::fs::create_dir(&sockets)
        .map_err(|e| remove_base(format!("mkdir {}: {e}", sockets.display())))?;
    if let Some((uid, gid)) = run_as {
        for dir in [&base, &sockets] {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|e| {
                remove_base(format!("cannot chown {} to uid {uid}: {e}", dir.display()))
            })?;
        }
    }

    let started = Instant::now();
    let mut initdb = tokio::process::Command::new(bindir.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "--encoding=UTF8",
            "--locale=C",
        ])
        .current_dir(&base)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some((uid, gid)) = run_as {
        initdb.uid(uid).gid(gid);
    }
    let out = initdb.output().await.map_err(|e| {
        remove_base(format!(
            "cannot run {}: {e}; {FIX}",
            bindir.join("initdb").display()
        ))
    })?;
    if !out.status.success() {
        return Err(remove_base(format!(
            "{} failed ({}):\n{}{}",
            bindir.join("initdb").display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }

    let port = free_port();
    let log = base.join("postgres.log");
    let port_arg = port.to_string();
    let sockets_arg = format!("unix_socket_directories={}", sockets.display());
    let mut args: Vec<&OsStr> = vec![OsStr::new("-D"), data.as_os_str()];
    for arg in [
        "-p",
        &port_arg,
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        &sockets_arg,
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "max_connections=200",
        "-c",
        "shared_buffers=32MB",
    ] {
        args.push(OsStr::new(arg));
    }
    let mut guard = Guarded::spawn(GuardedSpec {
        program: &bindir.join("postgres"),
        args,
        envs: vec![],
        clear_env: false,
        log: &log,
        cwd: &base,
        stop_signal: "INT",
        cleanup: Some(&base),
        run_as,
    })
    .map_err(fail)?;

    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match try_connect(&url).await {
            Ok(client) => {
                drop(client);
                eprintln!(
                    "[harness] PostgreSQL ({}) ready on port {port} in {:.1?}",
                    bindir.display(),
                    started.elapsed()
                );
                return Ok(Server {
                    admin_url: url,
                    _guard: Some(guard),
                });
            }
            Err(e) => {
                let exited = !guard.alive();
                if exited || Instant::now() > deadline {
                    let tail = file_tail(&log, 30);
                    let retry = exited && tail.contains("could not bind");
                    // Closing the pipe stops the server (if any) and removes `base`.
                    guard.release();
                    let what = if exited {
                        "exited during startup"
                    } else {
                        "was not ready within 60 s"
                    };
                    return Err((
                        format!(
                            "PostgreSQL from {} {what} (port {port}, last connect error: {e}); its log:\n{tail}",
                            bindir.display()
                        ),
                        retry,
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
