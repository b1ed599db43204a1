//! The `tracecat` binary on the recorded traces: arguments, exit status, files written.

use std::path::PathBuf;
use std::process::{Command, Output};

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn tracecat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tracecat"))
        .args(args)
        .output()
        .expect("tracecat runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracecat-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

#[test]
fn shows_a_trace_by_id_and_writes_both_pictures() {
    let svg = scratch("t.svg");
    let png = scratch("t.png");
    let file = fixture("tutorial_sequence.json");
    let list = tracecat(&["--file", &file, "--list"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    let listed = text(&list.stdout);
    let id = listed
        .lines()
        .find(|l| l.contains("notes POST /notes") && l.contains("calendar"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no distributed trace in:\n{listed}"))
        .to_owned();
    let svg_arg = svg.display().to_string();
    let png_arg = png.display().to_string();
    let out = tracecat(&[
        "--file",
        &file,
        "--trace-id",
        &id,
        "--svg",
        &svg_arg,
        "--png",
        &png_arg,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tree = text(&out.stdout);
    assert!(tree.starts_with(&format!("trace {id} ")), "{tree}");
    assert!(tree.contains("│  └─ calendar"), "{tree}");
    let svg_text = std::fs::read_to_string(&svg).expect("svg written");
    assert!(svg_text.contains("<svg"));
    let png_bytes = std::fs::read(&png).expect("png written");
    assert!(png_bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png_bytes.len() > 5_000, "suspiciously small PNG");
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("wrote {svg_arg}")), "{stderr}");
    let _ = std::fs::remove_dir_all(svg.parent().unwrap_or(&svg));
}

#[test]
fn reads_standard_input_and_picks_the_last_trace() {
    use std::io::Write;
    use std::process::Stdio;
    let json = std::fs::read(fixture("tutorial_sequence.json")).expect("fixture");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tracecat"))
        .args(["--file", "-", "--last"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("tracecat runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&json)
        .expect("write");
    let out = child.wait_with_output().expect("tracecat ends");
    assert!(out.status.success());
    let tree = text(&out.stdout);
    assert!(
        tree.lines()
            .next()
            .unwrap_or_default()
            .contains("calendar GET /calendar"),
        "{tree}"
    );
}

#[test]
fn failures_say_why() {
    let file = fixture("add_date.json");
    let missing = tracecat(&["--file", &file, "--trace-id", "1"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no trace has id 1; there are 1 trace(s): "));

    let unmatched = tracecat(&["--file", &file, "--resource", "GET /nothing"]);
    assert_eq!(unmatched.status.code(), Some(1));
    assert!(
        text(&unmatched.stderr).contains("none of the 1 trace(s) in ")
            && text(&unmatched.stderr).contains("matches --resource \"GET /nothing\""),
        "{}",
        text(&unmatched.stderr)
    );

    let usage = tracecat(&["--frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(text(&usage.stderr).contains("unknown argument `--frobnicate`"));

    let nofile = tracecat(&["--file", "/nonexistent/traces.json"]);
    assert_eq!(nofile.status.code(), Some(1));
    assert!(text(&nofile.stderr).contains("cannot read /nonexistent/traces.json"));

    let notjson = tracecat(&["--file", env!("CARGO_MANIFEST_DIR")]);
    assert_eq!(notjson.status.code(), Some(1));

    let help = tracecat(&["--help"]);
    assert!(help.status.success());
    assert!(text(&help.stdout).contains("--trace-id ID"));
}
