//! The notes API as a user of the tutorial sees it: the curl sequence, every error row, the JSON
//! and path forms, outages of the calendar and the database, concurrency. Each test gets a fresh
//! database and its own servers on free ports.
//!
//! The tests listed in [`on_both_stores!`] run twice, as `postgres::NAME` and `sqlite::NAME`:
//! on PostgreSQL and on a SQLite file. The SQLite-only tests (`no_database_settings…`,
//! `sqlite_…`) come after the PostgreSQL-only ones (outages through a TCP proxy).

use std::time::{Duration, Instant};
use test_support::inprocess::{
    closed_url, fake_calendar, hanging_calendar, spawn_calendar, spawn_notes,
    spawn_notes_behind_proxy, url_host_port, via_port, NotesApp, TcpProxy,
};
use test_support::store::{fresh_sqlite_path, open_sqlite, sqlite_path, sqlite_url};
use test_support::{Reply, ServiceProcess, Store};

const PLAIN: &str = "text/plain; charset=utf-8";

/// Runs each named `async fn NAME(store: Store)` as two tests, `postgres::NAME` and
/// `sqlite::NAME` (with the tokio test flavour given in parentheses, if any).
macro_rules! on_both_stores {
    ($( $test:ident $( ( $($flavor:tt)* ) )? ),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test $( ( $($flavor)* ) )? ]
                async fn $test() {
                    super::$test(super::Store::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test $( ( $($flavor)* ) )? ]
                async fn $test() {
                    super::$test(super::Store::Sqlite).await
                }
            )*
        }
    };
}

on_both_stores!(
    the_tutorial_curl_sequence,
    lists_are_ordered_by_id_and_decode_the_query,
    add_date_only_for_y_or_capital_y,
    every_error_row,
    descriptions_up_to_255_characters_never_truncated,
    json_for_clients_that_ask_for_it,
    path_form_of_the_go_and_java_tutorials,
    a_failed_query_does_not_poison_the_connection,
    calendar_unreachable_failing_or_slow_gives_503_and_stores_nothing,
    calendar_recovery_is_automatic,
    two_replicas_starting_together_share_one_table,
    concurrent_posts_get_distinct_ids_and_are_all_stored(
        flavor = "multi_thread",
        worker_threads = 4
    ),
);

async fn app(store: Store) -> NotesApp {
    let db = store.fresh().await;
    let calendar = spawn_calendar().await;
    spawn_notes(&db, &calendar, &[]).await
}

/// `(N, <desc> with date MM/DD/YYYY)` with a date in the calendar's range.
fn assert_dated(body: &str, id: i32, desc: &str) {
    let prefix = format!("({id}, {desc} with date ");
    assert!(body.starts_with(&prefix) && body.ends_with(')'), "{body:?}");
    let date = &body[prefix.len()..body.len() - 1];
    let parsed = chrono::NaiveDate::parse_from_str(date, "%m/%d/%Y")
        .unwrap_or_else(|e| panic!("{date:?}: {e}"));
    assert_eq!(date.len(), 10, "zero-padded MM/DD/YYYY: {date:?}");
    let first = chrono::NaiveDate::from_ymd_opt(2022, 1, 1).unwrap();
    let last = chrono::NaiveDate::from_ymd_opt(2023, 1, 1).unwrap();
    assert!(parsed >= first && parsed <= last, "{parsed}");
}

async fn the_tutorial_curl_sequence(store: Store) {
    let app = app(store).await;
    assert_eq!(
        app.send("GET", "/").await,
        Reply::plain(200, "Welcome to our notes app!")
    );
    assert_eq!(app.send("GET", "/notes").await, Reply::json(200, "{}\n"));
    assert_eq!(
        app.send("POST", "/notes?desc=hello").await,
        Reply::plain(201, "(1, hello)")
    );
    assert_eq!(
        app.send("GET", "/notes?id=1").await,
        Reply::plain(200, "(1, hello)")
    );
    assert_eq!(
        app.send("GET", "/notes").await,
        Reply::json(200, "{\n  \"1\": \"hello\"\n}\n")
    );
    assert_eq!(
        app.send("PUT", "/notes?id=1&desc=UpdatedNote").await,
        Reply::plain(200, "(1, UpdatedNote)")
    );
    assert_eq!(
        app.send("DELETE", "/notes?id=1").await,
        Reply::plain(200, "Deleted")
    );
    let Reply {
        status,
        content_type: ctype,
        body,
    } = app.send("POST", "/notes?desc=hello_again&add_date=y").await;
    assert_eq!((status, ctype.as_str()), (201, PLAIN));
    assert_dated(&body, 2, "hello_again");
    let Reply {
        status, body: list, ..
    } = app.send("GET", "/notes").await;
    assert_eq!(status, 200);
    let stored = &body[4..body.len() - 1];
    assert_eq!(list, format!("{{\n  \"2\": \"{stored}\"\n}}\n"));
    assert_eq!(app.rows().await, vec![(2, stored.to_string())]);
}

async fn lists_are_ordered_by_id_and_decode_the_query(store: Store) {
    let app = app(store).await;
    for d in ["a", "b%20c", "d%2Ce", "caf%C3%A9", "x+y"] {
        assert_eq!(
            app.send("POST", &format!("/notes?desc={d}")).await.status,
            201
        );
    }
    for id in 1..=10 {
        // ids 1..5 exist; the rest do not: ordering is numeric, not textual.
        let _ = app.send("GET", &format!("/notes?id={id}")).await;
    }
    let Reply { body: list, .. } = app.send("GET", "/notes").await;
    let parsed: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(
        parsed,
        serde_json::json!({"1": "a", "2": "b c", "3": "d,e", "4": "café", "5": "x y"})
    );
    // `GET /notes?id=` (empty) is the list, as in the original.
    assert_eq!(app.send("GET", "/notes?id=").await.body, list);
    // Numeric order: 10 comes after 9.
    for _ in 0..6 {
        app.send("POST", "/notes?desc=z").await;
    }
    let Reply { body: list, .. } = app.send("GET", "/notes").await;
    let nine = list.find("\"9\"").unwrap();
    let ten = list.find("\"10\"").unwrap();
    assert!(nine < ten, "{list}");
}

async fn add_date_only_for_y_or_capital_y(store: Store) {
    let app = app(store).await;
    assert_eq!(
        app.send("POST", "/notes?desc=nodate&add_date=n").await.body,
        "(1, nodate)"
    );
    assert_eq!(
        app.send("POST", "/notes?desc=nodate2&add_date=yes")
            .await
            .body,
        "(2, nodate2)"
    );
    let Reply { status, body, .. } = app.send("POST", "/notes?desc=upperY&add_date=Y").await;
    assert_eq!(status, 201);
    assert_dated(&body, 3, "upperY");
}

async fn every_error_row(store: Store) {
    let app = app(store).await;
    app.send("POST", "/notes?desc=keep").await;
    let cases: &[(&str, &str, u16, &str)] = &[
        ("GET", "/notes?id=999", 404, "Note does not exist"),
        ("GET", "/notes?id=abc", 400, "id"),
        ("GET", "/notes?id=0", 400, "id"),
        ("GET", "/notes?id=-1", 400, "id"),
        ("GET", "/notes?id=1e3", 400, "id"),
        ("GET", "/notes?id=99999999999999999999", 400, "id"),
        ("GET", "/notes?id=2147483648", 400, "id"),
        ("POST", "/notes", 400, "desc"),
        ("POST", "/notes?desc=", 400, "desc"),
        ("POST", "/notes?add_date=y", 400, "desc"),
        ("POST", "/notes?desc=a%00b", 400, "desc"),
        ("POST", "/notes?desc=%FF%FE", 400, "desc"),
        ("PUT", "/notes?id=999&desc=x", 404, "Note does not exist"),
        ("PUT", "/notes?id=abc&desc=x", 400, "id"),
        ("PUT", "/notes?desc=x", 400, "id"),
        ("PUT", "/notes?id=1", 400, "desc"),
        ("PUT", "/notes?id=1&desc=", 400, "desc"),
        ("DELETE", "/notes?id=999", 404, "Note does not exist"),
        ("DELETE", "/notes?id=abc", 400, "id"),
        ("DELETE", "/notes", 400, "id"),
        ("PATCH", "/notes", 405, "Method Not Allowed"),
        ("POST", "/", 405, "Method Not Allowed"),
        ("GET", "/nope", 404, "Not Found"),
        ("GET", "/notes/1/extra", 404, "Not Found"),
        ("GET", "/notes/abc", 400, "id"),
        ("GET", "/notes/999", 404, "Note does not exist"),
    ];
    for (method, path, status, text) in cases {
        let Reply {
            status: got,
            content_type: ctype,
            body,
        } = app.send(method, path).await;
        assert_eq!(got, *status, "{method} {path}: {body}");
        assert_eq!(ctype, PLAIN, "{method} {path}");
        assert!(
            body.contains(text),
            "{method} {path}: {body:?} should mention {text:?}"
        );
        assert!(
            body.len() < 200,
            "{method} {path}: short message, got {body:?}"
        );
    }
    // Nothing was stored or changed by the failures.
    assert_eq!(app.rows().await, vec![(1, "keep".to_string())]);
}

async fn descriptions_up_to_255_characters_never_truncated(store: Store) {
    let app = app(store).await;
    let ok = "é".repeat(255);
    let Reply { status, body, .. } = app
        .send("POST", &format!("/notes?desc={}", "%C3%A9".repeat(255)))
        .await;
    assert_eq!((status, body), (201, format!("(1, {ok})")));
    let Reply { status, body, .. } = app
        .send("POST", &format!("/notes?desc={}", "a".repeat(256)))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("255"), "{body}");
    let Reply { status, .. } = app
        .send("PUT", &format!("/notes?id=1&desc={}", "b".repeat(256)))
        .await;
    assert_eq!(status, 400);
    // With a date the stored text grows by 21 characters: the limit applies to the result.
    let Reply { status, body, .. } = app
        .send(
            "POST",
            &format!("/notes?desc={}&add_date=y", "c".repeat(235)),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let Reply { status, .. } = app
        .send(
            "POST",
            &format!("/notes?desc={}&add_date=y", "c".repeat(234)),
        )
        .await;
    assert_eq!(status, 201);
    let rows = app.rows().await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].1, ok);
    assert_eq!(rows[1].1.chars().count(), 255);
}

async fn json_for_clients_that_ask_for_it(store: Store) {
    let app = app(store).await;
    let Reply {
        status,
        content_type: ctype,
        body,
    } = app.send_json("POST", "/notes?desc=hello").await;
    assert_eq!((status, ctype.as_str()), (201, "application/json"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"id": 1, "description": "hello"})
    );
    let Reply { body, .. } = app.send_json("GET", "/notes?id=1").await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"id": 1, "description": "hello"})
    );
    let Reply {
        status,
        content_type: ctype,
        body,
    } = app.send_json("GET", "/notes?id=5").await;
    assert_eq!((status, ctype.as_str()), (404, "application/json"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"error": "Note does not exist"})
    );
    let Reply { status, body, .. } = app.send_json("GET", "/notes?id=x").await;
    assert_eq!(status, 400);
    assert!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("id")
    );
    let Reply { body, .. } = app.send_json("PUT", "/notes?id=1&desc=new").await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"id": 1, "description": "new"})
    );
    let Reply { status, body, .. } = app.send_json("DELETE", "/notes?id=1").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["deleted"],
        true
    );
    assert_eq!(
        app.send_json("GET", "/notes").await,
        Reply::json(200, "{}\n")
    );
}

async fn path_form_of_the_go_and_java_tutorials(store: Store) {
    let app = app(store).await;
    app.send("POST", "/notes?desc=first").await;
    assert_eq!(
        app.send("GET", "/notes/1").await,
        Reply::plain(200, "(1, first)")
    );
    assert_eq!(
        app.send("PUT", "/notes/1?desc=second").await,
        Reply::plain(200, "(1, second)")
    );
    assert_eq!(
        app.send("DELETE", "/notes/1").await,
        Reply::plain(200, "Deleted")
    );
    assert_eq!(app.send("GET", "/notes/1").await.status, 404);
    assert_eq!(app.send("DELETE", "/notes/1").await.status, 404);
    assert_eq!(app.send("POST", "/notes/1").await.status, 405);
    assert_eq!(app.send("PUT", "/notes/0?desc=x").await.status, 400);
}

/// Makes the database itself refuse a note whose description is `boom` (a constraint the
/// service knows nothing of), so that a statement really fails in the store.
async fn forbid_boom(db_url: &str) {
    match sqlite_path(db_url) {
        Some(path) => tokio::task::spawn_blocking(move || {
            open_sqlite(&path)
                .execute_batch(
                    "CREATE TRIGGER no_boom BEFORE INSERT ON notes WHEN NEW.description = 'boom' \
                     BEGIN SELECT RAISE(ABORT, 'no_boom'); END",
                )
                .expect("create the trigger")
        })
        .await
        .unwrap(),
        None => test_support::connect(db_url)
            .await
            .batch_execute("ALTER TABLE notes ADD CONSTRAINT no_boom CHECK (description <> 'boom')")
            .await
            .unwrap(),
    }
}

async fn a_failed_query_does_not_poison_the_connection(store: Store) {
    let db = store.fresh().await;
    let app = spawn_notes(&db, &closed_url(), &[("DB_POOL_SIZE", "1")]).await;
    // The original's poisoning sequence: `id=abc`, then the list.
    assert_eq!(app.send("GET", "/notes?id=abc").await.status, 400);
    assert_eq!(app.send("GET", "/notes").await.status, 200);
    // A statement that really fails in the database, on the only connection...
    forbid_boom(&db).await;
    let Reply { status, body, .. } = app.send("POST", "/notes?desc=boom").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        body, "Internal server error",
        "no internals leak to the client"
    );
    // ...and the next request on the same connection works. (PostgreSQL's sequence spent id 1
    // on the failed INSERT; SQLite rolled it back with the statement: either is right.)
    let id = match store {
        Store::Postgres => 2,
        Store::Sqlite => 1,
    };
    assert_eq!(
        app.send("POST", "/notes?desc=fine").await,
        Reply::plain(201, &format!("({id}, fine)"))
    );
    assert_eq!(
        app.send("GET", &format!("/notes?id={id}")).await.body,
        format!("({id}, fine)")
    );
    assert_eq!(app.rows().await, vec![(id, "fine".to_string())]);
}

async fn calendar_unreachable_failing_or_slow_gives_503_and_stores_nothing(store: Store) {
    let db = store.fresh().await;
    for (name, calendar) in [
        ("unreachable", closed_url()),
        ("failing", fake_calendar(500, "boom").await),
        (
            "garbage",
            fake_calendar(200, "<html>not a date</html>").await,
        ),
        ("hanging", hanging_calendar().await),
    ] {
        let app = spawn_notes(&db, &calendar, &[("CALENDAR_TIMEOUT_MS", "500")]).await;
        assert_eq!(app.send("GET", "/health").await.status, 200, "{name}");
        let started = Instant::now();
        let reply = app.send("POST", "/notes?desc=x&add_date=y").await;
        let took = started.elapsed();
        assert_eq!(
            reply,
            Reply::plain(503, "Cannot reach calendar service."),
            "{name}"
        );
        assert!(took < Duration::from_millis(1500), "{name}: took {took:?}");
        assert_eq!(app.rows().await, vec![], "{name}: no note stored");
        // Everything else still works.
        assert_eq!(app.send("GET", "/").await.status, 200, "{name}");
        assert_eq!(app.send("GET", "/notes").await.status, 200, "{name}");
    }
}

async fn calendar_recovery_is_automatic(store: Store) {
    let db = store.fresh().await;
    let proxy_target = spawn_calendar().await;
    let upstream = proxy_target.trim_start_matches("http://").to_string();
    let proxy = TcpProxy::start(&upstream).await;
    let app = spawn_notes(
        &db,
        &format!("http://127.0.0.1:{}", proxy.port),
        &[("CALENDAR_TIMEOUT_MS", "500")],
    )
    .await;
    assert_eq!(
        app.send("POST", "/notes?desc=a&add_date=y").await.status,
        201
    );
    proxy.cut().await;
    assert_eq!(
        app.send("POST", "/notes?desc=b&add_date=y").await.status,
        503
    );
    proxy.restore().await;
    assert_eq!(
        app.send("POST", "/notes?desc=c&add_date=y").await.status,
        201
    );
    let rows = app.rows().await;
    assert_eq!(rows.len(), 2);
    assert!(
        rows[0].1.starts_with("a with date ") && rows[1].1.starts_with("c with date "),
        "{rows:?}"
    );
}

#[tokio::test]
async fn database_down_gives_503_quickly_and_recovers_by_itself() {
    let (app, proxy) = spawn_notes_behind_proxy(&[("DB_POOL_TIMEOUT_MS", "500")]).await;
    assert_eq!(app.send("POST", "/notes?desc=before").await.status, 201);
    assert_eq!(app.send("GET", "/health").await.status, 200);

    proxy.cut().await;
    for (method, path) in [
        ("GET", "/notes?id=1"),
        ("POST", "/notes?desc=during"),
        ("GET", "/notes"),
        ("GET", "/health"),
    ] {
        let started = Instant::now();
        assert_eq!(
            app.send(method, path).await,
            Reply::plain(503, "Database unavailable"),
            "{method} {path}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{method} {path} took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        app.send("GET", "/").await.status,
        200,
        "the service itself stays up"
    );

    proxy.restore().await;
    let body = app
        .wait_for_ok("/notes?id=1", Duration::from_secs(10))
        .await;
    assert_eq!(body, "(1, before)");
    assert_eq!(app.send("POST", "/notes?desc=after").await.status, 201);
    let rows: Vec<String> = app.rows().await.into_iter().map(|r| r.1).collect();
    assert_eq!(
        rows,
        vec!["before", "after"],
        "the note refused during the outage was not stored"
    );
}

#[tokio::test]
async fn starts_while_the_database_is_not_up_yet() {
    let db = test_support::fresh_database().await;
    let (host_port, _) = url_host_port(&db);
    let proxy = TcpProxy::start(&host_port).await;
    proxy.cut().await;
    let app = spawn_notes(
        &via_port(&db, proxy.port),
        &closed_url(),
        &[("DB_POOL_TIMEOUT_MS", "300")],
    )
    .await;
    assert_eq!(app.send("GET", "/health").await.status, 503);
    assert_eq!(app.send("GET", "/").await.status, 200);
    proxy.restore().await;
    app.wait_for_ok("/health", Duration::from_secs(10)).await;
    assert_eq!(
        app.send("POST", "/notes?desc=late").await,
        Reply::plain(201, "(1, late)")
    );
}

async fn two_replicas_starting_together_share_one_table(store: Store) {
    let db = store.fresh().await;
    let calendar = closed_url();
    let (a, b) = tokio::join!(
        spawn_notes(&db, &calendar, &[]),
        spawn_notes(&db, &calendar, &[])
    );
    let (ra, rb) = tokio::join!(
        a.send("POST", "/notes?desc=a"),
        b.send("POST", "/notes?desc=b")
    );
    assert_eq!((ra.status, rb.status), (201, 201), "{ra:?} {rb:?}");
    assert_eq!(a.rows().await.len(), 2);
}

async fn concurrent_posts_get_distinct_ids_and_are_all_stored(store: Store) {
    let app = app(store).await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let client = app.client.clone();
        let url = app.url(&format!("/notes?desc=n{i}"));
        tasks.push(tokio::spawn(async move {
            test_support::send(&client, "POST", &url, &[]).await
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for task in tasks {
        let Reply { status, body, .. } = task.await.unwrap();
        assert_eq!(status, 201, "{body}");
        let id: i32 = body[1..body.find(',').unwrap()].parse().unwrap();
        assert!(ids.insert(id), "duplicate id {id}");
    }
    let rows = app.rows().await;
    assert_eq!(rows.len(), 64);
    assert_eq!(
        rows.iter()
            .map(|r| r.0)
            .collect::<std::collections::BTreeSet<_>>(),
        ids
    );
}

#[test]
fn bad_configuration_stops_start_up_with_one_line_naming_the_variable() {
    for (var, value) in [
        ("DB_PORT", "abc"),
        ("PORT", "99999"),
        ("CALENDAR_TIMEOUT_MS", "soon"),
        ("DD_TRACE_SAMPLE_RATE", "7"),
        ("DATABASE_URL", "mysql://root@localhost/notes"),
        ("DD_TRACE_PARTIAL_FLUSH_MIN_SPANS", "0"),
        ("DD_TRACE_PARTIAL_FLUSH_ENABLED", "maybe"),
        ("DD_TRACE_HEALTH_METRICS_ENABLED", "maybe"),
        ("DD_DOGSTATSD_PORT", "99999"),
        ("DD_DOGSTATSD_HOST", "no host"),
        ("DD_TRACE_PROPAGATION_BEHAVIOR_EXTRACT", "sometimes"),
    ] {
        test_support::service::assert_bad_setting_stops_start_up("notes", var, value);
    }
}

/// Exit status and stderr of `notes` started with `envs`, which must stop it at start-up.
fn notes_refuses_to_start(envs: &[(&str, &str)]) -> (Option<i32>, String) {
    notes_refuses_to_start_as(None, envs)
}

/// [`notes_refuses_to_start`] as another user (uid, gid).
fn notes_refuses_to_start_as(
    user: Option<(u32, u32)>,
    envs: &[(&str, &str)],
) -> (Option<i32>, String) {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(test_support::service::bin_dir().join("notes"));
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command
        .envs([
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("DD_TRACE_ENABLED", "false"),
        ])
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::null());
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the notes binary (built by `cargo build --workspace --bins`)");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for notes") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("notes with {envs:?} did not stop at start-up");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    (status.code(), stderr)
}

/// The message of the start-up record saying where notes keeps its notes.
async fn store_line(notes: &ServiceProcess) -> String {
    let record = notes
        .wait_for_log(
            |l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("notes are kept in"))
            },
            Duration::from_secs(5),
        )
        .await;
    record["message"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn no_database_settings_at_all_serve_the_tutorial_from_memory() {
    // `cargo run -p notes` on a laptop: no DB_* variable, no DATABASE_URL (the harness removes
    // the caller's), a calendar on its port.
    let calendar = ServiceProcess::spawn(
        "calendar",
        &[("HOST", "127.0.0.1"), ("DD_TRACE_ENABLED", "false")],
    )
    .await;
    let calendar_port = calendar.port().to_string();
    let notes = ServiceProcess::spawn(
        "notes",
        &[
            ("HOST", "127.0.0.1"),
            ("CALENDAR_PORT", &calendar_port),
            ("DD_TRACE_ENABLED", "false"),
            ("NOTES_HELPER_DELAY_SCALE", "0"),
        ],
    )
    .await;
    assert_eq!(
        store_line(&notes).await,
        "notes are kept in SQLite in memory: notes are lost at exit"
    );
    let client = reqwest::Client::new();
    let base = notes.base_url();
    let send = |method: &'static str, path: &'static str| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move {
            let Reply { status, body, .. } = test_support::send(&client, method, &url, &[]).await;
            (status, body)
        }
    };
    assert_eq!(send("GET", "/notes").await, (200, "{}\n".into()));
    assert_eq!(
        send("POST", "/notes?desc=hello").await,
        (201, "(1, hello)".into())
    );
    assert_eq!(send("GET", "/notes?id=1").await, (200, "(1, hello)".into()));
    assert_eq!(
        send("GET", "/notes").await,
        (200, "{\n  \"1\": \"hello\"\n}\n".into())
    );
    assert_eq!(
        send("PUT", "/notes?id=1&desc=UpdatedNote").await,
        (200, "(1, UpdatedNote)".into())
    );
    assert_eq!(send("DELETE", "/notes?id=1").await, (200, "Deleted".into()));
    let (status, body) = send("POST", "/notes?desc=hello_again&add_date=y").await;
    assert_eq!(status, 201, "{body}");
    assert_dated(&body, 2, "hello_again");
    let stored = &body[4..body.len() - 1];
    assert_eq!(
        send("GET", "/notes").await,
        (200, format!("{{\n  \"2\": \"{stored}\"\n}}\n"))
    );
    assert_eq!(send("GET", "/health").await, (200, "OK".into()));
}

#[tokio::test]
async fn sqlite_file_keeps_the_notes_across_restarts_and_never_reuses_ids() {
    let path = fresh_sqlite_path();
    let url = sqlite_url(&path);
    let env = [
        ("HOST", "127.0.0.1"),
        ("DATABASE_URL", url.as_str()),
        ("DD_TRACE_ENABLED", "false"),
    ];
    let client = reqwest::Client::new();
    let mut first = ServiceProcess::spawn("notes", &env).await;
    assert_eq!(
        store_line(&first).await,
        format!("notes are kept in SQLite file {}", path.display())
    );
    let base = first.base_url();
    for (method, path, want) in [
        ("POST", "/notes?desc=one", "(1, one)"),
        ("POST", "/notes?desc=two", "(2, two)"),
        ("DELETE", "/notes?id=2", "Deleted"),
    ] {
        let Reply { body, .. } =
            test_support::send(&client, method, &format!("{base}{path}"), &[]).await;
        assert_eq!(body, want, "{method} {path}");
    }
    first.signal(libc::SIGTERM);
    assert_eq!(
        first
            .wait_exit(Duration::from_secs(10))
            .await
            .and_then(|s| s.code()),
        Some(0)
    );
    let second = ServiceProcess::spawn("notes", &env).await;
    let base = second.base_url();
    let Reply { status, body, .. } =
        test_support::send(&client, "GET", &format!("{base}/notes?id=1"), &[]).await;
    assert_eq!((status, body.as_str()), (200, "(1, one)"));
    // The deleted id 2 is not handed out again, after a restart either (as PostgreSQL's SERIAL).
    let Reply { status, body, .. } =
        test_support::send(&client, "POST", &format!("{base}/notes?desc=three"), &[]).await;
    assert_eq!((status, body.as_str()), (201, "(3, three)"));
    assert_eq!(
        test_support::store::sqlite_rows(&path),
        vec![(1, "one".to_string()), (3, "three".to_string())]
    );
}

#[test]
fn unusable_sqlite_files_stop_start_up_with_one_line_naming_database_url() {
    let dir = fresh_sqlite_path().with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.db");
    std::fs::write(
        &garbage,
        "this is not a database, it only has a .db name ".repeat(20),
    )
    .unwrap();
    let locked = dir.join("locked.db");
    let holder = open_sqlite(&locked);
    holder
        .execute_batch("CREATE TABLE t (x); BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);")
        .expect("lock the file");
    let missing_dir = dir.join("no/such/dir/notes.db");
    for (path, reason) in [
        (dir.clone(), "cannot be opened"),
        (missing_dir, "cannot be opened"),
        (garbage, "not a SQLite database"),
        (locked.clone(), "locked by another process"),
    ] {
        let url = sqlite_url(&path);
        let started = Instant::now();
        let (code, stderr) =
            notes_refuses_to_start(&[("DATABASE_URL", &url), ("DB_POOL_TIMEOUT_MS", "300")]);
        assert_eq!(code, Some(2), "{url}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{url}: {stderr}");
        assert!(
            stderr.starts_with("notes: invalid DATABASE_URL: ") && stderr.contains(reason),
            "{url}: {stderr}"
        );
        assert!(stderr.contains(&path.display().to_string()), "{stderr}");
        assert!(started.elapsed() < Duration::from_secs(10), "{url}");
    }
    // Files this user may not read, or only read. As root (who may read and write anything)
    // notes runs as `nobody` for these.
    let user = if test_support::process::is_root() {
        Some(test_support::process::lookup_user("nobody").expect("a `nobody` user"))
    } else {
        None
    };
    for d in [dir.parent().expect("the temp dir"), &dir] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for (name, mode, reason) in [
        ("unreadable.db", 0o000, "cannot be opened"),
        ("readonly.db", 0o444, "read-only"),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        open_sqlite(&path)
            .execute_batch("CREATE TABLE t (x)")
            .expect("create a database");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let url = sqlite_url(&path);
        let (code, stderr) = notes_refuses_to_start_as(user, &[("DATABASE_URL", &url)]);
        assert_eq!(code, Some(2), "{url}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{url}: {stderr}");
        assert!(
            stderr.starts_with("notes: invalid DATABASE_URL: ") && stderr.contains(reason),
            "{url}: {stderr}"
        );
    }
    // Once the other process lets go, the same file works.
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    let (code, stderr) =
        notes_refuses_to_start(&[("DATABASE_URL", &sqlite_url(&locked)), ("PORT", "99999")]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("PORT"),
        "only the bad port is left: {stderr}"
    );
    for url in ["sqlite:", "sqlite:notes.db?mode=ro", "redis://localhost/0"] {
        let (code, stderr) = notes_refuses_to_start(&[("DATABASE_URL", url)]);
        assert_eq!(code, Some(2), "{url}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{url}: {stderr}");
        assert!(stderr.contains("DATABASE_URL"), "{url}: {stderr}");
    }
}

#[tokio::test]
async fn sqlite_locked_by_another_process_gives_503_then_recovers() {
    let db = Store::Sqlite.fresh().await;
    // One worker: a statement waiting for the lock must not hold it up.
    let app = spawn_notes(
        &db,
        &closed_url(),
        &[("DB_POOL_TIMEOUT_MS", "1000"), ("WORKERS", "1")],
    )
    .await;
    assert_eq!(app.send("POST", "/notes?desc=before").await.status, 201);
    let path = sqlite_path(&db).unwrap();
    // Another process takes the write lock and holds it.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let c = open_sqlite(&path);
        c.execute_batch("BEGIN EXCLUSIVE; INSERT INTO notes(description) VALUES ('other');")
            .expect("lock the file");
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv();
        c.execute_batch("ROLLBACK").unwrap();
    });
    locked_rx.recv().unwrap();
    for (method, path) in [
        ("POST", "/notes?desc=during"),
        ("PUT", "/notes?id=1&desc=x"),
    ] {
        let started = Instant::now();
        let waiting = app.send(method, path);
        let meanwhile = async {
            // While SQLite waits for the lock (on the blocking pool), the only worker serves.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let asked = Instant::now();
            let answer = app.send("GET", "/").await.status;
            (answer, asked.elapsed())
        };
        let (reply, (other, other_took)) = tokio::join!(waiting, meanwhile);
        assert_eq!(
            reply,
            Reply::plain(503, "Database unavailable"),
            "{method} {path}"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
            "{method} {path} waited for the lock about DB_POOL_TIMEOUT_MS, took {took:?}"
        );
        assert_eq!(other, 200);
        assert!(
            other_took < Duration::from_millis(500),
            "GET / waited {other_took:?} behind a blocked SQLite statement"
        );
    }
    // Readers are not blocked by the writer (write-ahead log).
    assert_eq!(app.send("GET", "/notes?id=1").await.body, "(1, before)");
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(
        app.send("POST", "/notes?desc=after").await,
        Reply::plain(201, "(2, after)")
    );
    assert_eq!(
        app.rows().await,
        vec![(1, "before".to_string()), (2, "after".to_string())],
        "the refused notes were not stored"
    );
}
