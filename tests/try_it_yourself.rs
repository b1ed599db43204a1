//! The tutorial's "try it yourself" step: `docs/try-it-yourself.patch` (one custom span on
//! `GET /notes?id=N`) applies to the code as it is, builds, and the patched notes sends the
//! span docs/TUTORIAL.md says: `notes` · `notes.get_one` · `get_one`, under the request's server
//! span, with the note's id as `note.id` and the database query below it.
//!
//! The patched copy of the workspace is built under `target/try-it-yourself/` (its own target
//! directory: the real binaries the other tests run are left alone), so the first run compiles
//! notes' dependencies once more.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use test_support::{ServiceProcess, TestAgent};

const WAIT: Duration = Duration::from_secs(20);

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.expect("a directory entry");
        let name = entry.file_name();
        if name == "target" || name == "corpus" || name == "artifacts" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type().expect("a file type").is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
        }
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The workspace copied to `target/try-it-yourself/src`, patched and built; the notes binary.
fn patched_notes() -> PathBuf {
    let root = test_support::workspace_root();
    let base = root.join("target/try-it-yourself");
    let src = base.join("src");
    let _ = std::fs::remove_dir_all(&src);
    for file in ["Cargo.toml", "Cargo.lock"] {
        std::fs::create_dir_all(&src).expect("a scratch directory");
        std::fs::copy(root.join(file), src.join(file)).expect("copying the manifest");
    }
    copy_tree(&root.join("crates"), &src.join("crates"));
    copy_tree(&root.join("tests"), &src.join("tests"));
    // As the tutorial says: `git apply docs/try-it-yourself.patch` from the repository root.
    run(
        Command::new("git")
            .args(["apply", "--verbose"])
            .arg(root.join("docs/try-it-yourself.patch"))
            // The copy sits inside the repository's work tree: without a ceiling, git would
            // apply relative to the repository and skip every path outside `src`.
            .env("GIT_CEILING_DIRECTORIES", &base)
            .current_dir(&src),
        "git apply docs/try-it-yourself.patch",
    );
    let routes = std::fs::read_to_string(src.join("crates/notes/src/routes.rs"))
        .expect("the patched routes.rs");
    assert!(
        routes.contains("operation.name = \"notes.get_one\""),
        "the patch did not change crates/notes/src/routes.rs"
    );
    run(
        Command::new(env!("CARGO"))
            .args(["build", "--locked", "--offline", "-p", "notes"])
            .env("CARGO_TARGET_DIR", base.join("target"))
            .current_dir(&src),
        "building the patched notes",
    );
    base.join("target/debug/notes")
}

fn span<'a>(trace: &'a [Value], name: &str) -> &'a Value {
    trace
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} span in {trace:?}"))
}

#[tokio::test]
async fn the_try_it_yourself_patch_gives_the_span_the_tutorial_shows() {
    let notes_bin = tokio::task::spawn_blocking(patched_notes)
        .await
        .expect("the build thread");
    let agent = TestAgent::start().await;
    let url = agent.url();
    let db = test_support::fresh_database().await;
    let env = [
        ("DD_TRACE_AGENT_URL", url.as_str()),
        ("DD_TRACE_FLUSH_INTERVAL_MS", "200"),
        ("HOST", "127.0.0.1"),
        ("DATABASE_URL", db.as_str()),
        ("NOTES_HELPER_DELAY_SCALE", "0.01"),
    ];
    let notes = ServiceProcess::spawn_program(&notes_bin, &[], &env).await;
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{}/notes?desc=hello", notes.base_url()))
        .send()
        .await
        .expect("POST /notes")
        .text()
        .await
        .expect("a body");
    let id: i64 = created
        .trim_start_matches('(')
        .split(',')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected answer {created}"));
    let got = client
        .get(format!("{}/notes?id={id}", notes.base_url()))
        .send()
        .await
        .expect("GET /notes?id=N");
    assert_eq!(got.status().as_u16(), 200);

    let traces = agent
        .wait_for_traces(
            |ts| {
                ts.iter()
                    .any(|t| t.iter().any(|s| s["name"] == "notes.get_one"))
            },
            WAIT,
        )
        .await;
    let trace = traces
        .iter()
        .find(|t| t.iter().any(|s| s["name"] == "notes.get_one"))
        .expect("the GET trace");
    let server = span(trace, "actix_web.request");
    let custom = span(trace, "notes.get_one");
    let query = span(trace, "postgres.query");
    assert_eq!(server["resource"], "GET /notes");
    assert_eq!(custom["service"], "notes", "{custom}");
    assert_eq!(custom["resource"], "get_one", "{custom}");
    assert_eq!(custom["parent_id"], server["span_id"], "{trace:?}");
    assert_eq!(query["parent_id"], custom["span_id"], "{trace:?}");
    let note_id = custom["metrics"]["note.id"].as_f64().or_else(|| {
        custom["meta"]["note.id"]
            .as_str()
            .and_then(|v| v.parse().ok())
    });
    assert_eq!(note_id, Some(id as f64), "{custom}");
}
