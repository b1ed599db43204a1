//! Plumbing shared by the dev-only tools: the integration-test harness (`tests/support`) and the
//! benchmark (`crates/bench`). Nothing here is part of the services.
//!
//! - [`free_port`]: a loopback TCP port that was free a moment ago.
//! - [`is_root`], [`lookup_user`]: who runs, and as whom to run PostgreSQL (which refuses root).
//! - [`file_tail`], [`lines_tail`]: the end of a log, for error messages.
//! - [`pid_alive`]: whether a process still runs (Linux `/proc`).
//! - [`pg_bindir`]: where the PostgreSQL server binaries are installed.
//!
//! Only `std` and `libc`: the benchmark must not pull in the harness's dependencies.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// A loopback TCP port that was free a moment ago, for programs that cannot bind port 0
/// themselves. Another process may take it before it is used: callers that start a server on
/// it should retry on "address in use".
pub fn free_port() -> std::io::Result<u16> {
    let [port] = free_ports()?;
    Ok(port)
}

/// `N` distinct free loopback ports (as [`free_port`]): each is held until all are chosen, so
/// that two calls in a row cannot hand out the same port.
pub fn free_ports<const N: usize>() -> std::io::Result<[u16; N]> {
    let mut held = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        *port = listener.local_addr()?.port();
        held.push(listener);
    }
    Ok(ports)
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The (uid, gid) of a system user, via getpwnam(3).
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam takes a NUL-terminated string and returns a pointer to a static record
    // (or null) that we read at once, before any other call could overwrite it.
    unsafe {
        let pw = libc::getpwnam(cname.as_ptr());
        if pw.is_null() {
            None
        } else {
            Some(((*pw).pw_uid, (*pw).pw_gid))
        }
    }
}

/// The last `max_lines` lines of a text file, or a note saying why it could not be read.
pub fn file_tail(path: &Path, max_lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => lines_tail(
            &String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
            max_lines,
        ),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// The last `max_lines` of `lines`, each ending in a newline, with a marker when some were
/// left out (and `(no output)` when there is none).
pub fn lines_tail(lines: &[String], max_lines: usize) -> String {
    let start = lines.len().saturating_sub(max_lines);
    let mut out = String::new();
    if start > 0 {
        out.push_str(&format!("[... {start} earlier lines ...]\n"));
    }
    for line in &lines[start..] {
        out.push_str(line);
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("(no output)\n");
    }
    out
}

/// Whether process `pid` exists and is not a zombie (Linux `/proc`).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
}

/// Where to look for the PostgreSQL server binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search<'a> {
    /// The directories on `PATH` first, then the newest `/usr/lib/postgresql/*/bin`.
    PathFirst,
    /// The newest `/usr/lib/postgresql/*/bin` first, then these directories.
    VersionedFirst(&'a [&'a str]),
}

/// The first directory holding every one of `binaries` (e.g. `initdb`, `postgres`), searched
/// as `search` says; `None` when there is none.
pub fn pg_bindir(binaries: &[&str], search: Search<'_>) -> Option<PathBuf> {
    let has_all = |dir: &Path| binaries.iter().all(|b| dir.join(b).is_file());
    match search {
        Search::PathFirst => {
            // The harness's own lookup on PATH, not a service's configuration.
            #[allow(clippy::disallowed_methods)]
            let path = std::env::var_os("PATH");
            path.and_then(|p| std::env::split_paths(&p).find(|d| has_all(d)))
                .or_else(|| newest_versioned_bindir(&has_all))
        }
        Search::VersionedFirst(dirs) => newest_versioned_bindir(&has_all)
            .or_else(|| dirs.iter().map(PathBuf::from).find(|d| has_all(d))),
    }
}

/// The newest `/usr/lib/postgresql/<major>/bin` (Debian's layout) that `fits`.
fn newest_versioned_bindir(fits: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            fits(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_the_last_lines_and_say_what_was_left_out() {
        let lines: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(lines_tail(&lines, 2), "[... 1 earlier lines ...]\nb\nc\n");
        assert_eq!(lines_tail(&lines, 5), "a\nb\nc\n");
        assert_eq!(lines_tail(&[], 5), "(no output)\n");
        assert!(file_tail(Path::new("/no/such/file"), 5).starts_with("(cannot read /no/such/file"));
    }

    #[test]
    fn this_process_is_alive_and_a_free_port_is_bindable() {
        assert!(pid_alive(std::process::id()));
        let port = free_port().expect("a free port");
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }
}
