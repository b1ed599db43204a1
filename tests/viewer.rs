//! The trace viewer (`tracecat serve`) in a real browser: the services send the tutorial's
//! requests to Datadog's test agent, the viewer reads it, and headless Chromium (from Debian)
//! loads its pages (`--dump-dom` for what a user sees, `--screenshot` for pictures: one per view
//! in `target/viewer-screenshots/`, whose pixels are checked too: the flame graph fills a wide
//! window; docs/viewer.png is made by docs/pictures.sh from a run with the shipped delays). A
//! missing Chromium fails with the fix.

use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use test_support::http::assert_statuses;
use test_support::{send, Reply, TestAgent};

const WAIT: Duration = Duration::from_secs(20);

// The harness's own lookup on PATH, not the services' configuration (as in tests/support).
#[allow(clippy::disallowed_methods)]
fn chromium() -> PathBuf {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|p| p.is_file())
            })
        });
    found.unwrap_or_else(|| {
        panic!(
            "no Chromium found on PATH: install it (Debian: apt-get install chromium; \
             `bash tests/run.sh` does it in CI)"
        )
    })
}

/// Runs headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=…`); its stdout.
async fn browser(args: &[String], url: &str) -> String {
    // A profile of its own per run: the tests of this file run Chromium concurrently, and a
    // profile directory admits one browser at a time.
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let profile =
        std::env::temp_dir().join(format!("viewer-chromium-{}-{run}", std::process::id()));
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium did not finish within 90 s")
    .expect("chromium could not be run");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The page at `url` as the browser built it.
async fn dom(url: &str) -> String {
    browser(&["--dump-dom".to_owned()], url).await
}

/// `tracecat serve` on a free port, killed when dropped.
struct Viewer {
    child: tokio::process::Child,
    base: String,
}

impl Viewer {
    async fn start(agent: &str) -> Viewer {
        let bin = test_support::service::bin_dir().join("tracecat");
        assert!(
            bin.is_file(),
            "{} not found: run `cargo build --workspace --bins` first (`bash tests/run.sh` does it)",
            bin.display()
        );
        let port = test_support::free_port();
        let listen = format!("127.0.0.1:{port}");
        let child = tokio::process::Command::new(bin)
            .args(["serve", "--agent", agent, "--listen", &listen])
            .args(["--settle", "1000"])
            .kill_on_drop(true)
            .spawn()
            .expect("tracecat serve could not be run");
        let viewer = Viewer {
            child,
            base: format!("http://{listen}"),
        };
        let deadline = Instant::now() + WAIT;
        while reqwest::get(&viewer.base).await.is_err() {
            assert!(Instant::now() < deadline, "tracecat serve did not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        viewer
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// `GET url` on a connection of its own.
async fn get(url: &str) -> Reply {
    send(&reqwest::Client::new(), "GET", url, &[]).await
}

/// The text of the first element of `html` with `attribute="value"`, from its opening tag to
/// the matching end of the row or section (enough for the assertions here).
fn element<'a>(html: &'a str, attribute: &str, value: &str, end: &str) -> &'a str {
    let needle = format!("{attribute}=\"{value}\"");
    let start = html
        .find(&needle)
        .unwrap_or_else(|| panic!("no element with {needle} in:\n{html}"));
    let rest = &html[start..];
    let stop = rest.find(end).map(|i| i + end.len()).unwrap_or(rest.len());
    &rest[..stop]
}

/// An attribute of the span row of `service`/`name` in the trace page.
fn row_attr(html: &str, service: &str, name: &str, attribute: &str) -> String {
    html.split("<tr class=\"span-row")
        .skip(1)
        .find(|row| {
            row.contains(&format!("data-service=\"{service}\""))
                && row.contains(&format!("data-name=\"{name}\""))
        })
        .and_then(|row| {
            let key = format!("{attribute}=\"");
            let at = row.find(&key)? + key.len();
            Some(row[at..].split('"').next()?.to_owned())
        })
        .unwrap_or_else(|| panic!("no {service} {name} row with {attribute} in:\n{html}"))
}

/// The `<tr class="span-row…">` of the list of spans for `service`/`name`, up to its `</tr>`.
fn span_row<'a>(html: &'a str, service: &str, name: &str) -> &'a str {
    html.split("<tr class=\"span-row")
        .skip(1)
        .find(|row| {
            row.contains(&format!("data-service=\"{service}\""))
                && row.contains(&format!("data-name=\"{name}\""))
        })
        .and_then(|row| row.split("</tr>").next())
        .unwrap_or_else(|| panic!("no {service} {name} row in:\n{html}"))
}

/// The value of `name="…"` in `tag` (the text of an opening tag), as the DOM dump writes it.
fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(tag[at..].split('"').next()?.to_owned())
}

/// A number in a CSS declaration such as `left:12.5%` of `style`.
fn css_percent(style: &str, property: &str) -> f64 {
    style
        .split(';')
        .find_map(|d| d.trim().strip_prefix(&format!("{property}:")))
        .and_then(|v| v.trim().trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("no {property} in style {style:?}"))
}

/// One bar of the flame graph, as the page gives it.
#[derive(Debug)]
struct Bar {
    class: String,
    span_id: u64,
    href: String,
    title: String,
    left: f64,
    width: f64,
    fill: String,
    text: String,
}

/// The bars of the flame graph in `page`.
fn flame_bars(page: &str) -> Vec<Bar> {
    let flame = element(page, "id", "flame", "<p class=\"legend\"");
    flame
        .split("<a class=\"")
        .skip(1)
        .map(|piece| {
            let tag = format!(
                " class=\"{}",
                &piece[..piece.find('>').unwrap_or(piece.len())]
            );
            let get = |name: &str| {
                attr(&tag, name).unwrap_or_else(|| panic!("bar without {name}: {tag}"))
            };
            let style = get("style");
            let text = piece[piece.find('>').map_or(0, |i| i + 1)..]
                .split("</a>")
                .next()
                .unwrap_or_default()
                .to_owned();
            Bar {
                class: get("class"),
                span_id: get("data-span-id").parse().expect("a span id"),
                href: get("href").replace("&amp;", "&"),
                title: get("title"),
                left: css_percent(&style, "left"),
                width: css_percent(&style, "width"),
                fill: style
                    .split("background:")
                    .nth(1)
                    .map(|c| c.trim_end_matches(';').to_owned())
                    .unwrap_or_default(),
                text,
            }
        })
        .collect()
}

fn bar(bars: &[Bar], span_id: u64) -> &Bar {
    bars.iter()
        .find(|b| b.span_id == span_id && !b.class.contains("ancestor"))
        .unwrap_or_else(|| panic!("no bar of span {span_id} in {bars:#?}"))
}

/// Where the screenshots go (printed, to look at them).
fn screenshot_dir() -> PathBuf {
    let dir = test_support::workspace_root().join("target/viewer-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// Takes a screenshot of `url` at `width`×`height` into `screenshot_dir()/name`; its pixels.
async fn screenshot(name: &str, url: &str, width: u32, height: u32) -> Picture {
    let path = screenshot_dir().join(name);
    let _ = std::fs::remove_file(&path);
    browser(
        &[
            format!("--screenshot={}", path.display()),
            format!("--window-size={width},{height}"),
        ],
        url,
    )
    .await;
    println!("screenshot: {} ({url})", path.display());
    Picture::read(&path)
}

/// A screenshot's pixels (RGB).
struct Picture {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

impl Picture {
    fn read(path: &std::path::Path) -> Picture {
        let bytes = std::fs::read(path).expect("chromium wrote the screenshot");
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
        let info = reader.next_frame(&mut buf).expect("a frame");
        let channels = info.color_type.samples();
        assert!(channels >= 3, "{:?}", info.color_type);
        let rgb = buf[..info.buffer_size()]
            .chunks(channels)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        Picture {
            width: info.width as usize,
            height: info.height as usize,
            rgb,
        }
    }

    /// The most pixels of `colour` (`#rrggbb`) in one row: how wide a bar of that colour is drawn.
    fn widest(&self, colour: &str) -> usize {
        let hex = |i: usize| u8::from_str_radix(&colour[i..i + 2], 16).expect("a #rrggbb colour");
        let want = [hex(1), hex(3), hex(5)];
        (0..self.height)
            .map(|y| {
                self.rgb[y * self.width..(y + 1) * self.width]
                    .iter()
                    .filter(|p| p.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 6))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}

#[tokio::test]
async fn the_viewer_shows_the_tutorials_traces_in_a_browser() {
    let mut agent = TestAgent::start().await;
    let agent_url = agent.url();
    let viewer = Viewer::start(&agent_url).await;

    // Nothing sent yet: the list says how to send a first request.
    let page = dom(&viewer.url("/")).await;
    assert!(page.contains("id=\"no-traces\""), "{page}");
    assert!(page.contains("curl -X POST"), "{page}");

    let common = [
        ("DD_TRACE_AGENT_URL", agent_url.as_str()),
        ("DD_TRACE_FLUSH_INTERVAL_MS", "200"),
        ("HOST", "127.0.0.1"),
    ];
    let (calendar, notes) = test_support::calendar_and_notes(&common, &[]).await;
    let base = notes.base_url();

    // The tutorial's requests (and health checks, which are not traced).
    assert_statuses(
        &base,
        &[
            ("GET", "/notes", 200),
            ("POST", "/notes?desc=hello", 201),
            ("GET", "/notes?id=1", 200),
            ("PUT", "/notes?id=1&desc=UpdatedNote", 200),
            ("DELETE", "/notes?id=1", 200),
            ("GET", "/health", 200),
            ("POST", "/notes?desc=hello_again&add_date=y", 201),
        ],
    )
    .await;
    let traces = agent
        .wait_for_traces(
            |ts| ts.iter().any(|t| test_support::agent::is_distributed(t)),
            WAIT,
        )
        .await;
    let add_date = traces
        .iter()
        .find(|t| test_support::agent::is_distributed(t))
        .expect("the distributed trace");
    let trace_id = add_date[0]["trace_id"].as_u64().expect("a trace id");
    let span_of = |service: &str, name: &str| {
        add_date
            .iter()
            .find(|s| s["service"] == service && s["name"] == name)
            .and_then(|s| s["span_id"].as_u64())
            .unwrap_or_else(|| panic!("no {service} {name} span"))
    };
    // Let the last chunks settle (the viewer's settle time is 1 s here).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The list: the tutorial's requests, newest first, no health check.
    let page = dom(&viewer.url("/")).await;
    assert!(page.contains("id=\"traces\""), "{page}");
    let rows: Vec<&str> = page.split("<tr class=\"trace").skip(1).collect();
    // The six requests only: notes' start-up trace (`notes.startup`, its root not a web
    // request) is hidden by default, and the list says so, with the way to show it.
    assert_eq!(rows.len(), 6, "{page}");
    assert!(
        !element(&page, "id", "traces", "</table>").contains("bootstrap database"),
        "{page}"
    );
    assert!(
        page.contains("<span id=\"hidden-background\">1 background trace hidden</span>"),
        "{page}"
    );
    assert!(
        attr(element(&page, "id", "background", ">"), "checked").is_none(),
        "{page}"
    );
    let all = dom(&viewer.url("/?background=1")).await;
    let all_rows: Vec<&str> = all.split("<tr class=\"trace").skip(1).collect();
    assert_eq!(all_rows.len(), 7, "{all}");
    let startup: Vec<&&str> = all_rows
        .iter()
        .filter(|r| r.contains(">bootstrap database</a>"))
        .collect();
    assert_eq!(startup.len(), 1, "{all}");
    assert!(!all.contains("id=\"hidden-background\""), "{all}");
    assert!(
        attr(element(&all, "id", "background", ">"), "checked").is_some(),
        "{all}"
    );
    let post_rows = rows
        .iter()
        .filter(|r| r.contains(">POST /notes</a>"))
        .count();
    assert_eq!(post_rows, 2, "{page}");
    assert!(
        rows[0].contains(&format!("data-trace-id=\"{trace_id}\"")),
        "{page}"
    );
    assert!(
        rows[0].contains("calendar") && rows[0].contains("postgres"),
        "{page}"
    );
    assert!(!page.contains("GET /health"), "{page}");
    assert!(
        page.contains(&format!("id=\"last\" href=\"/trace/{trace_id}\"")),
        "{page}"
    );

    // Filters: by service, and by resource.
    let page = dom(&viewer.url("/?service=calendar")).await;
    let rows = page.split("<tr class=\"trace").skip(1).count();
    assert_eq!(rows, 1, "{page}");
    let page = dom(&viewer.url("/?resource=PUT")).await;
    assert!(page.contains(">PUT /notes</a>"), "{page}");
    assert!(!page.contains(">POST /notes</a>"), "{page}");

    // Search by the decimal id the logs carry: opens the trace.
    let page = dom(&viewer.url(&format!("/search?id={trace_id}"))).await;
    assert!(page.contains("id=\"flame\""), "{page}");

    // The add_date trace: spans of notes, calendar and postgres, the calendar server span under
    // the notes client span, bars in the flame graph linking to each span.
    let page = dom(&viewer.url(&format!("/trace/{trace_id}"))).await;
    assert!(page.contains("notes POST /notes"), "{page}");
    let notes_root = span_of("notes", "actix_web.request");
    let client = span_of("reqwest", "reqwest.request");
    let calendar_server = span_of("calendar", "actix_web.request");
    assert_eq!(
        row_attr(&page, "reqwest", "reqwest.request", "data-parent-id"),
        notes_root.to_string()
    );
    assert_eq!(
        row_attr(&page, "calendar", "actix_web.request", "data-parent-id"),
        client.to_string()
    );
    assert_eq!(
        row_attr(&page, "calendar", "actix_web.request", "data-depth"),
        "2"
    );
    assert_eq!(
        row_attr(&page, "postgres", "postgres.query", "data-depth"),
        "1"
    );
    let flame = element(&page, "id", "flame", "<p class=\"legend\"");
    for service in ["notes", "reqwest", "calendar", "postgres", "notes_helper"] {
        assert!(
            flame.contains(&format!("data-service=\"{service}\"")),
            "{flame}"
        );
    }
    let link = format!("href=\"?span={calendar_server}&amp;zoom={calendar_server}\"");
    assert!(flame.contains(&link), "{flame}");

    // As the trace opens: one heading, the id said once, the root span selected with its tags,
    // a hint that links to the list (beside the tags in a wide window, below them in a narrow
    // one) rather than saying where it is.
    assert_eq!(page.matches("<h1").count(), 1, "{page}");
    assert_eq!(page.matches(&trace_id.to_string()).count(), 1, "{page}");
    let details = element(&page, "id", "details", "</section>");
    assert!(details.contains("<h2>POST /notes</h2>"), "{details}");
    assert!(
        details.contains("<td class=\"mono\">http.route</td><td class=\"mono\">/notes</td>"),
        "{details}"
    );
    assert!(!page.contains("No span selected"), "{page}");
    assert!(!page.contains("a row below"), "{page}");
    assert!(
        page.contains("a span's name in the <a href=\"#spans\">list of spans</a>"),
        "{page}"
    );
    assert!(
        span_row(&page, "notes", "actix_web.request").starts_with(" selected"),
        "{page}"
    );
    // In the list the span's resource is the link that selects it, not its service.
    let row = span_row(&page, "calendar", "actix_web.request");
    assert!(
        row.contains(&format!(
            "<a href=\"?span={calendar_server}\">GET /calendar</a>"
        )),
        "{row}"
    );
    assert!(!row.contains(">calendar</a>"), "{row}");

    // Every bar is a link naming its span on hover (however narrow it is drawn).
    let bars = flame_bars(&page);
    assert_eq!(bars.len(), 6, "{bars:#?}");
    for b in &bars {
        assert!(
            b.title.contains(" · ") && b.title.contains("span id: "),
            "{b:?}"
        );
        assert!(b.href.starts_with("?span="), "{b:?}");
    }
    assert!(bar(&bars, client)
        .title
        .starts_with("reqwest · GET /calendar · "));
    assert_eq!(
        (bar(&bars, notes_root).left, bar(&bars, notes_root).width),
        (0.0, 100.0)
    );
    assert!(bar(&bars, notes_root).class.contains("selected"));
    let unzoomed = bar(&bars, calendar_server).width;

    // The flame graph fills a wide window: the root's bar runs across (nearly) all of it.
    let trace_url = viewer.url(&format!("/trace/{trace_id}"));
    let shot = screenshot("1-flame.png", &trace_url, 1920, 1000).await;
    let root_fill = &bar(&bars, notes_root).fill;
    assert!(
        shot.widest(root_fill) > shot.width * 9 / 10,
        "the root's bar ({root_fill}) is {} px wide in a {} px window",
        shot.widest(root_fill),
        shot.width
    );

    // One click on the client span's bar zooms to the calendar call: it fills the width, the
    // calendar's spans under it, the notes root above it (dimmed) to zoom back out.
    let zoomed_url = format!("{trace_url}{}", bar(&bars, client).href);
    let page = dom(&zoomed_url).await;
    let bars = flame_bars(&page);
    let shown: Vec<u64> = bars
        .iter()
        .filter(|b| !b.class.contains("ancestor"))
        .map(|b| b.span_id)
        .collect();
    let get_date = span_of("calendar", "calendar.get_date");
    assert_eq!(shown, vec![client, calendar_server, get_date], "{bars:#?}");
    assert_eq!(
        (bar(&bars, client).left, bar(&bars, client).width),
        (0.0, 100.0)
    );
    assert!(bar(&bars, client).class.contains("selected"));
    assert!(
        bar(&bars, calendar_server).width > unzoomed * 1.5,
        "{} against {unzoomed} before zooming",
        bar(&bars, calendar_server).width
    );
    assert!(bar(&bars, calendar_server)
        .text
        .contains("calendar · GET /calendar"));
    let ancestor = bars
        .iter()
        .find(|b| b.class.contains("ancestor"))
        .unwrap_or_else(|| panic!("no ancestor bar: {bars:#?}"));
    assert_eq!(ancestor.span_id, notes_root);
    assert_eq!(ancestor.href, format!("?span={notes_root}"));
    let zoom = element(&page, "id", "zoom", "</span>");
    assert!(
        zoom.contains("Zoomed in") && zoom.contains("reqwest GET /calendar"),
        "{zoom}"
    );
    let details = element(&page, "id", "details", "</section>");
    assert!(details.contains("<h2>GET /calendar</h2>"), "{details}");
    let shot = screenshot("2-flame-zoomed.png", &zoomed_url, 1920, 1000).await;
    let client_fill = &bar(&bars, client).fill;
    assert!(
        shot.widest(client_fill) > shot.width * 9 / 10,
        "the zoomed client bar is {} px wide",
        shot.widest(client_fill)
    );
    // And back: Zoom out shows the whole trace again, the client span still selected.
    let out = attr(element(&page, "id", "zoom-out", ">"), "href")
        .expect("a zoom-out link")
        .replace("&amp;", "&");
    assert_eq!(out, format!("?span={client}"));
    let page = dom(&format!("{trace_url}{out}")).await;
    let bars = flame_bars(&page);
    assert_eq!(bars.len(), 6, "{bars:#?}");
    assert!(bar(&bars, client).class.contains("selected"));
    assert!(element(&page, "id", "zoom", "</span>").contains("whole trace"));

    // The waterfall: a tab beside the flame graph; one row per span in tree order, indented by
    // depth, each bar placed on the one time axis; the client's row zooms to the calendar call.
    let tab = attr(element(&page, "id", "tab-waterfall", ">"), "href").expect("a tab link");
    assert_eq!(
        tab.replace("&amp;", "&"),
        format!("?view=waterfall&span={client}")
    );
    let waterfall_url = format!("{trace_url}?view=waterfall");
    let page = dom(&waterfall_url).await;
    assert!(
        element(&page, "id", "tab-waterfall", ">").contains("aria-current=\"page\""),
        "{page}"
    );
    let table = element(&page, "id", "waterfall", "</table>");
    let rows: Vec<&str> = table.split("<tr class=\"wf-row").skip(1).collect();
    assert_eq!(rows.len(), 6, "{table}");
    assert!(
        rows[0].contains(&format!("data-span-id=\"{notes_root}\"")),
        "{table}"
    );
    let wf_row = |id: u64| {
        rows.iter()
            .find(|r| r.contains(&format!("data-span-id=\"{id}\"")))
            .unwrap_or_else(|| panic!("no waterfall row for {id}: {table}"))
    };
    assert!(
        wf_row(calendar_server).contains("data-depth=\"2\""),
        "{table}"
    );
    assert!(
        wf_row(calendar_server).contains(&format!(
            "<a href=\"?view=waterfall&amp;span={calendar_server}\">GET /calendar</a>"
        )),
        "{table}"
    );
    let lane_left = |id: u64| {
        let row = wf_row(id);
        let bar = &row[row.find("class=\"wf-bar").expect("a bar")..];
        css_percent(&attr(bar, "style").expect("a style"), "left")
    };
    assert_eq!(lane_left(notes_root), 0.0);
    assert!(lane_left(client) < lane_left(calendar_server), "{table}");
    assert!(lane_left(calendar_server) <= lane_left(get_date), "{table}");
    screenshot("3-waterfall.png", &waterfall_url, 1600, 900).await;
    let zoom_in = format!("href=\"?view=waterfall&amp;span={client}&amp;zoom={client}\"");
    assert!(wf_row(client).contains(&zoom_in), "{table}");
    let zoomed_url = format!("{trace_url}?view=waterfall&span={client}&zoom={client}");
    let page = dom(&zoomed_url).await;
    let table = element(&page, "id", "waterfall", "</table>");
    assert_eq!(table.matches("<tr class=\"wf-row").count(), 3, "{table}");
    screenshot("4-waterfall-zoomed.png", &zoomed_url, 1600, 900).await;

    // Selecting the calendar server span (following its bar's link) shows all its tags.
    let selected_url = viewer.url(&format!("/trace/{trace_id}?span={calendar_server}"));
    let page = dom(&selected_url).await;
    let details = element(&page, "id", "details", "</section>");
    for (key, value) in [
        ("service", "calendar"),
        ("resource", "GET /calendar"),
        ("http.route", "/calendar"),
        ("http.status_code", "200"),
        ("span.kind", "server"),
        ("component", "actix-web"),
    ] {
        assert!(
            details.contains(&format!(
                "<td class=\"mono\">{key}</td><td class=\"mono\">{value}</td>"
            )),
            "{key}={value} not in {details}"
        );
    }
    assert!(
        bar(&flame_bars(&page), calendar_server)
            .class
            .contains("selected"),
        "{page}"
    );

    // The picture for docs/ (and README): the same page, as the browser draws it.
    let shot = test_support::workspace_root().join("target/viewer-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    browser(
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,980".to_owned(),
        ],
        &selected_url,
    )
    .await;
    println!("screenshot: {} ({selected_url})", shot.display());
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );

    // The same data as JSON.
    let Reply { status, body, .. } = get(&viewer.url("/api/traces")).await;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).expect("JSON");
    let first = &list["traces"][0];
    assert_eq!(first["trace_id"], trace_id.to_string(), "{body}");
    assert_eq!(first["resource"], "POST /notes", "{body}");
    assert_eq!(first["complete"], true, "{body}");
    let Reply { status, body, .. } = get(&viewer.url(&format!("/api/traces/{trace_id}"))).await;
    assert_eq!(status, 200, "{body}");
    let one: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(one["spans"].as_array().map(Vec::len), Some(6), "{body}");

    // With the calendar down, POST /notes?add_date=y fails: both views mark its error spans red
    // with an error mark, and the root's error message leads its tags.
    drop(calendar);
    let reply = send(
        &reqwest::Client::new(),
        "POST",
        &format!("{base}/notes?desc=down&add_date=y"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    let failed = |t: &Vec<Value>| {
        t.iter()
            .any(|s| s["service"] == "reqwest" && s["error"] == 1)
    };
    let traces = agent
        .wait_for_traces(|ts| ts.iter().any(failed), WAIT)
        .await;
    let failed_id = traces
        .iter()
        .find(|t| failed(t))
        .and_then(|t| t[0]["trace_id"].as_u64())
        .expect("the failed trace's id");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let failed_url = viewer.url(&format!("/trace/{failed_id}"));
    let page = dom(&failed_url).await;
    let bars = flame_bars(&page);
    let errors: Vec<&Bar> = bars.iter().filter(|b| b.class.contains("error")).collect();
    assert_eq!(errors.len(), 2, "{bars:#?}");
    for b in &errors {
        assert!(b.text.starts_with("<b class=\"mark\""), "{b:?}");
        assert!(b.title.contains("\nerror: "), "{b:?}");
    }
    assert!(page.contains("2 error span(s)"), "{page}");
    let details = element(&page, "id", "details", "</section>");
    assert!(details.contains("class=\"error-message\""), "{details}");
    screenshot("5-errors-flame.png", &failed_url, 1600, 900).await;
    let failed_url = format!("{failed_url}?view=waterfall");
    let page = dom(&failed_url).await;
    let table = element(&page, "id", "waterfall", "</table>");
    assert_eq!(
        table.matches("<tr class=\"wf-row error").count(),
        2,
        "{table}"
    );
    assert_eq!(
        table.matches("class=\"wf-bar error\"").count(),
        2,
        "{table}"
    );
    assert_eq!(table.matches("<b class=\"mark\"").count(), 2, "{table}");
    screenshot("6-errors-waterfall.png", &failed_url, 1600, 900).await;

    // Bad and unknown ids.
    let Reply { status, body, .. } = get(&viewer.url("/trace/123")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("No such trace"), "{body}");
    let Reply { status, .. } = get(&viewer.url("/trace/not-an-id")).await;
    assert_eq!(status, 400);
    let Reply { status, body, .. } = get(&viewer.url("/search?id=zz")).await;
    assert_eq!(status, 400);
    assert!(body.contains("is not a trace id"), "{body}");
    let Reply { status, .. } = get(&viewer.url("/api/traces/123")).await;
    assert_eq!(status, 404);

    // The agent goes away: the page says so and how to start it; then it recovers by itself.
    agent.stop().await;
    let page = dom(&viewer.url("/")).await;
    assert!(page.contains("id=\"agent-down\""), "{page}");
    assert!(page.contains("--profile testagent up"), "{page}");
    agent.restart().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let page = dom(&viewer.url("/")).await;
        if page.contains("id=\"no-traces\"") || page.contains("id=\"traces\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the viewer did not recover: {page}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(notes);
}

/// The "Services" table beside the trace list: requests, errors and latency per service and
/// resource from the stats the services send (here when they stop; else every 10 s), as a
/// learner reads it in the browser, and the page updates as more stats arrive.
#[tokio::test]
async fn the_viewer_shows_the_services_stats_in_a_browser() {
    let agent = TestAgent::start().await;
    let agent_url = agent.url();
    let viewer = Viewer::start(&agent_url).await;
    let page = dom(&viewer.url("/")).await;
    assert!(page.contains("No stats yet"), "{page}");

    let common = [
        ("DD_TRACE_AGENT_URL", agent_url.as_str()),
        ("DD_TRACE_FLUSH_INTERVAL_MS", "200"),
        ("HOST", "127.0.0.1"),
    ];
    let (mut calendar, mut notes) = test_support::calendar_and_notes(&common, &[]).await;
    let base = notes.base_url();
    assert_statuses(
        &base,
        &[
            ("POST", "/notes?desc=hello", 201),
            ("GET", "/notes?id=1", 200),
            ("GET", "/notes?id=1", 200),
            ("GET", "/notes?id=7", 404),
            ("POST", "/notes?desc=hello_again&add_date=y", 201),
        ],
    )
    .await;
    // Calendar down: the next add_date request fails, an error in the table.
    calendar.signal(libc::SIGTERM);
    calendar.wait_exit(WAIT).await;
    let reply = send(
        &reqwest::Client::new(),
        "POST",
        &format!("{base}/notes?desc=late&add_date=y"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    // Stopping sends the last stats.
    notes.signal(libc::SIGTERM);
    notes.wait_exit(WAIT).await;

    let deadline = Instant::now() + WAIT;
    let page = loop {
        let page = dom(&viewer.url("/")).await;
        if page.contains("<td>POST /notes</td>") || Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let table = element(&page, "class", "stats-table", "</table>");
    let row = |service: &str, resource: &str| -> Vec<String> {
        let start = format!("<tr><td>{service}</td><td>{resource}</td>");
        let Some(at) = table.find(&start) else {
            panic!("no row for {service} {resource} in the table:\n{table}");
        };
        let end = table[at..].find("</tr>").map_or(table.len(), |e| at + e);
        table[at..end]
            .split("<td")
            .skip(1)
            .map(|cell| {
                let text = cell.split_once('>').map_or("", |(_, t)| t);
                text.trim_end_matches("</td>").to_string()
            })
            .collect()
    };
    // requests and errors; the latencies are durations.
    let post = row("notes", "POST /notes");
    assert_eq!(&post[2..4], ["3", "1"], "POST /notes: {post:?}");
    let get_note = row("notes", "GET /notes");
    assert_eq!(&get_note[2..4], ["3", "0"], "GET /notes: {get_note:?}");
    for cell in &get_note[4..7] {
        assert!(cell.ends_with('s'), "a latency: {cell:?} in {get_note:?}");
    }
    let calendar_row = row("calendar", "GET /calendar");
    assert_eq!(&calendar_row[2..4], ["1", "0"], "{calendar_row:?}");
    let picture = screenshot("services-stats.png", &viewer.url("/"), 1400, 900).await;
    assert!(picture.width >= 1400, "the screenshot was taken");
}
