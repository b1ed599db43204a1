//! The command line: see [`USAGE`].

use crate::arrival::{State, Watcher, DEFAULT_SETTLE};
use crate::flame::{render_svg, Style};
use crate::model::{parse_trace_id, select, Filter, Selector, Trace};
use crate::raster::svg_to_png;
use crate::serve::ServeArgs;
use crate::source::{self, DEFAULT_AGENT};
use crate::tree::{render_list, render_text};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub const USAGE: &str = "\
tracecat: shows one trace from Datadog's APM test agent (or a JSON dump of its traces)
as a tree in the terminal and, on request, as a flame graph picture.

Usage: tracecat [--agent URL | --file PATH] [--last | --trace-id ID | --list]
                [--service NAME] [--resource TEXT] [--settle MS] [--wait S]
                [--svg PATH] [--png PATH] [--width PX] [--scale N] [--quiet]
       tracecat serve [--agent URL] [--listen ADDR:PORT] [--settle MS]

Where the traces come from (default: --agent http://localhost:8126):
  --agent URL      the test agent (ddapm-test-agent); reads URL/test/traces
  --file PATH      a JSON dump of traces, e.g. saved with
                   `curl localhost:8126/test/traces > traces.json`; `-` reads stdin
Which trace (default: --last):
  --last           the trace whose root span started last
  --trace-id ID    the trace with this id: decimal, as Datadog shows it and the
                   logs carry it (dd.trace_id), 0x-prefixed hex, or the 32 hex
                   digits of a 128-bit id
  --list           list the traces (id, duration, spans, root, services), oldest
                   first, instead of showing one
  --service NAME   only traces with a span of service NAME (e.g. calendar)
  --resource TEXT  only traces whose root span's resource contains TEXT
                   (e.g. 'POST /notes')
Whole traces only (with --agent, for --last and --trace-id): each service sends
its spans on its own every second, so tracecat waits until the trace, and for
--last the agent as a whole, has been quiet for the settle time:
  --settle MS      quiet time that makes a trace complete (default 2500: two
                   flush intervals and a margin; 0 takes what is there)
  --wait S         wait at most this long (default 15), then show what arrived
                   with a warning
Output (the tree always goes to stdout unless --quiet):
  --svg PATH       write the flame graph as SVG
  --png PATH       write the flame graph as PNG (needs a font, e.g. fonts-dejavu-core)
  --width PX       width of the picture in pixels (default 1200)
  --scale N        PNG pixels per SVG pixel (default 1; 2 for high-density screens)
  --quiet          do not print the tree
  -h, --help       this text
  -V, --version    the version

tracecat serve: the trace viewer in the browser (list, flame graph and waterfall
with zoom, span tags, and the same as JSON under /api/traces), reading the agent
on every page:
  --agent URL          the test agent (default http://localhost:8126)
  --listen ADDR:PORT   where to serve (default 127.0.0.1:8127; 0.0.0.0:8127 in
                       a container)
  --settle MS          as above (default 2500)

Exit status: 0 shown, 1 no such trace or an error reading or writing, 2 bad arguments.
";

/// Where `tracecat serve` listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8127";

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct Args {
    pub agent: Option<String>,
    pub file: Option<PathBuf>,
    pub selector: Selector,
    pub filter: Filter,
    pub list: bool,
    pub svg: Option<PathBuf>,
    pub png: Option<PathBuf>,
    pub width: u32,
    pub scale: f32,
    pub quiet: bool,
    /// Quiet time that makes a trace complete (`--settle`).
    pub settle: Duration,
    /// Longest wait for a complete trace (`--wait`).
    pub wait: Duration,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            agent: None,
            file: None,
            selector: Selector::Last,
            filter: Filter::default(),
            list: false,
            svg: None,
            png: None,
            width: Style::default().width,
            scale: 1.0,
            quiet: false,
            settle: DEFAULT_SETTLE,
            wait: Duration::from_secs(15),
        }
    }
}

/// What to do: run, or print help or version.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Run(Args),
    Serve(ServeArgs),
    Help,
    Version,
}

/// The arguments, one flag at a time: `--opt value` and `--opt=value` both work.
struct Flags<'a>(std::slice::Iter<'a, String>);

impl<'a> Flags<'a> {
    /// The next flag, and its value when given inline (`--opt=value`).
    fn next_flag(&mut self) -> Option<(&'a str, Option<&'a str>)> {
        let arg = self.0.next()?;
        Some(match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
            _ => (arg.as_str(), None),
        })
    }

    /// The value of flag `name`: the inline one, else the next argument.
    fn value(&mut self, name: &str, inline: Option<&str>) -> Result<String> {
        match inline.map(str::to_owned).or_else(|| self.0.next().cloned()) {
            Some(v) => Ok(v),
            None => bail!("{name} needs a value"),
        }
    }
}

/// Parses the arguments (without the program name). `--opt value` and `--opt=value` both work.
pub fn parse_args(args: &[String]) -> Result<Command> {
    if args.first().map(String::as_str) == Some("serve") {
        return parse_serve(&args[1..]);
    }
    let mut out = Args::default();
    let mut picked: Option<&str> = None;
    let mut flags = Flags(args.iter());
    while let Some((flag, inline)) = flags.next_flag() {
        let mut value = |name: &str| flags.value(name, inline);
        let mut pick = |what: &'static str| -> Result<()> {
            if let Some(before) = picked.filter(|p| *p != what) {
                bail!("{before} and {what} cannot be used together");
            }
            picked = Some(what);
            Ok(())
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--agent" => out.agent = Some(value("--agent")?),
            "--file" => out.file = Some(PathBuf::from(value("--file")?)),
            "--last" => {
                pick("--last")?;
                out.selector = Selector::Last;
            }
            "--trace-id" => {
                pick("--trace-id")?;
                out.selector = Selector::Id(parse_trace_id(&value("--trace-id")?)?);
            }
            "--service" => out.filter.service = Some(value("--service")?),
            "--resource" => out.filter.resource = Some(value("--resource")?),
            "--list" => {
                pick("--list")?;
                out.list = true;
            }
            "--svg" => out.svg = Some(PathBuf::from(value("--svg")?)),
            "--png" => out.png = Some(PathBuf::from(value("--png")?)),
            "--width" => {
                let v = value("--width")?;
                out.width = v
                    .parse()
                    .ok()
                    .filter(|w| (320..=20_000).contains(w))
                    .with_context(|| format!("--width must be 320 to 20000 pixels, not `{v}`"))?;
            }
            "--scale" => {
                let v = value("--scale")?;
                out.scale = v
                    .parse()
                    .ok()
                    .filter(|s: &f32| s.is_finite() && *s > 0.0 && *s <= 8.0)
                    .with_context(|| {
                        format!("--scale must be more than 0 and at most 8, not `{v}`")
                    })?;
            }
            "--quiet" | "-q" => out.quiet = true,
            "--settle" => out.settle = settle(&value("--settle")?)?,
            "--wait" => {
                let v = value("--wait")?;
                out.wait = v
                    .parse::<u64>()
                    .ok()
                    .filter(|s| *s <= 3600)
                    .map(Duration::from_secs)
                    .with_context(|| format!("--wait must be 0 to 3600 seconds, not `{v}`"))?;
            }
            other => bail!("unknown argument `{other}`"),
        }
        if inline.is_some() && matches!(flag, "--last" | "--list" | "--quiet") {
            bail!("{flag} takes no value");
        }
    }
    if out.agent.is_some() && out.file.is_some() {
        bail!("--agent and --file cannot be used together");
    }
    if out.list && (out.svg.is_some() || out.png.is_some()) {
        bail!("--list shows no picture: drop --svg/--png, or pick a trace instead of --list");
    }
    Ok(Command::Run(out))
}

fn settle(v: &str) -> Result<Duration> {
    v.parse::<u64>()
        .ok()
        .filter(|ms| *ms <= 600_000)
        .map(Duration::from_millis)
        .with_context(|| format!("--settle must be 0 to 600000 milliseconds, not `{v}`"))
}

/// Parses the arguments after `serve`.
fn parse_serve(args: &[String]) -> Result<Command> {
    let mut out = ServeArgs {
        agent: DEFAULT_AGENT.to_owned(),
        listen: DEFAULT_LISTEN.parse().context("the default address")?,
        settle: DEFAULT_SETTLE,
    };
    let mut flags = Flags(args.iter());
    while let Some((flag, inline)) = flags.next_flag() {
        let mut value = |name: &str| flags.value(name, inline);
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "--agent" => out.agent = value("--agent")?,
            "--listen" => {
                let v = value("--listen")?;
                out.listen = v.parse().with_context(|| {
                    format!(
                        "--listen must be an address and port such as 127.0.0.1:8127, not `{v}`"
                    )
                })?;
            }
            "--settle" => out.settle = settle(&value("--settle")?)?,
            other => bail!("unknown argument `{other}` for `tracecat serve`"),
        }
    }
    Ok(Command::Serve(out))
}

/// Runs the command line: output to `stdout`, errors to stderr, and the exit status.
pub fn main(args: &[String], stdout: &mut dyn Write) -> ExitCode {
    let args = match parse_args(args) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Serve(args)) => return finish(crate::serve::run(&args)),
        Ok(Command::Help) => return finish(stdout.write_all(USAGE.as_bytes()).map_err(Into::into)),
        Ok(Command::Version) => {
            return finish(
                writeln!(stdout, "tracecat {}", env!("CARGO_PKG_VERSION")).map_err(Into::into),
            )
        }
        Err(e) => {
            eprintln!("tracecat: {e:#}\nTry `tracecat --help`.");
            return ExitCode::from(2);
        }
    };
    finish(run(&args, stdout))
}

fn finish(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracecat: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the traces, then lists them or shows the one asked for.
pub fn run(args: &Args, stdout: &mut dyn Write) -> Result<()> {
    let (traces, origin) = match &args.file {
        Some(path) => (source::from_file(path)?, path.display().to_string()),
        None => {
            let agent = args.agent.as_deref().unwrap_or(DEFAULT_AGENT);
            let origin = format!("the test agent at {}", source::normalize_agent_url(agent));
            let traces = if args.list || args.settle.is_zero() {
                source::from_agent(agent)?
            } else {
                settled(agent, args)?
            };
            (traces, origin)
        }
    };
    let received = traces.len();
    let traces = args.filter.apply(traces);
    if traces.is_empty() {
        if received > 0 {
            bail!(
                "none of the {received} trace(s) in {origin} matches {}",
                args.filter.describe()
            );
        }
        bail!(
            "{origin} has no traces yet: send a request, wait a second for the services to \
             send their spans, and check where they send them (DD_AGENT_HOST, \
             DD_TRACE_AGENT_PORT, DD_TRACE_ENABLED)"
        );
    }
    if args.list {
        stdout.write_all(render_list(&traces).as_bytes())?;
        return Ok(());
    }
    let trace = select(&traces, &args.selector).with_context(|| {
        if args.filter.is_empty() {
            format!("in {origin}")
        } else {
            format!(
                "in {origin}, among those matching {}",
                args.filter.describe()
            )
        }
    })?;
    show(trace, args, stdout)
}

/// Polls the agent until the trace asked for is whole (see [`crate::arrival`]), or `--wait`
/// has passed (then warns and returns what is there).
fn settled(agent: &str, args: &Args) -> Result<Vec<crate::model::Trace>> {
    let mut watcher = Watcher::new(args.settle);
    let started = Instant::now();
    loop {
        let traces = source::from_agent(agent)?;
        watcher.observe(&traces);
        let candidates = args.filter.apply(traces.clone());
        let picked = select(&candidates, &args.selector).ok();
        let done = match (&args.selector, picked) {
            // The newest may not have shown up yet: the agent as a whole must be quiet too.
            (Selector::Last, Some(t)) => watcher.all_quiet() && watcher.state(t) == State::Complete,
            (Selector::Last, None) => watcher.all_quiet(),
            (Selector::Id(_), Some(t)) => watcher.state(t) == State::Complete,
            (Selector::Id(_), None) => watcher.all_quiet(),
        };
        if done {
            return Ok(traces);
        }
        if started.elapsed() >= args.wait {
            if let Some(t) = picked {
                eprintln!(
                    "tracecat: trace {} was still receiving spans after {} s; showing what                      has arrived (more time: --wait)",
                    t.trace_id,
                    args.wait.as_secs()
                );
            }
            return Ok(traces);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Prints the tree and writes the pictures asked for.
pub fn show(trace: &Trace, args: &Args, stdout: &mut dyn Write) -> Result<()> {
    if !args.quiet {
        stdout.write_all(render_text(trace).as_bytes())?;
    }
    if args.svg.is_none() && args.png.is_none() {
        return Ok(());
    }
    let svg = render_svg(
        trace,
        &Style {
            width: args.width,
            ..Style::default()
        },
    );
    if let Some(path) = &args.svg {
        std::fs::write(path, &svg).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("tracecat: wrote {}", path.display());
    }
    if let Some(path) = &args.png {
        let png = svg_to_png(&svg, args.scale)?;
        std::fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("tracecat: wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TraceId;

    fn parse(args: &[&str]) -> Result<Command> {
        parse_args(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn run_args(args: &[&str]) -> Args {
        match parse(args) {
            Ok(Command::Run(a)) => a,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    #[test]
    fn defaults_and_options() {
        assert_eq!(run_args(&[]), Args::default());
        let a = run_args(&[
            "--agent=localhost:1",
            "--service",
            "calendar",
            "--resource=POST /notes",
            "--trace-id",
            "42",
            "--svg",
            "a.svg",
            "--png=b.png",
            "--width",
            "800",
            "--scale",
            "2",
            "-q",
        ]);
        assert_eq!(a.agent.as_deref(), Some("localhost:1"));
        assert_eq!(a.selector, Selector::Id(TraceId::Low(42)));
        assert_eq!(a.filter.service.as_deref(), Some("calendar"));
        assert_eq!(a.filter.resource.as_deref(), Some("POST /notes"));
        assert_eq!(a.svg, Some(PathBuf::from("a.svg")));
        assert_eq!(a.png, Some(PathBuf::from("b.png")));
        assert_eq!((a.width, a.scale, a.quiet), (800, 2.0, true));
        assert!(run_args(&["--list"]).list);
        assert_eq!(parse(&["-h"]).ok(), Some(Command::Help));
        assert_eq!(parse(&["--version"]).ok(), Some(Command::Version));
        let a = run_args(&["--settle", "0", "--wait=3"]);
        assert_eq!((a.settle, a.wait), (Duration::ZERO, Duration::from_secs(3)));
        match parse(&["serve", "--agent", "http://a:1", "--listen=0.0.0.0:9"]) {
            Ok(Command::Serve(s)) => {
                assert_eq!(s.agent, "http://a:1");
                assert_eq!(s.listen.to_string(), "0.0.0.0:9");
                assert_eq!(s.settle, DEFAULT_SETTLE);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["serve"]) {
            Ok(Command::Serve(s)) => assert_eq!(s.listen.to_string(), DEFAULT_LISTEN),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_arguments() {
        for bad in [
            &["--nope"][..],
            &["--agent"],
            &["--agent", "a", "--file", "f"],
            &["--last", "--trace-id", "1"],
            &["--list", "--svg", "x.svg"],
            &["--trace-id", "zz"],
            &["--width", "10"],
            &["--width", "abc"],
            &["--scale", "0"],
            &["--scale", "NaN"],
            &["--last=1"],
            &["--settle", "-1"],
            &["--wait", "x"],
            &["serve", "--listen", "8127"],
            &["serve", "--nope"],
            &["serve", "--settle"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
