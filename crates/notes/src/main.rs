//! `notes`: the notes service. `notes healthcheck` checks a running instance (for Docker).

/// mimalloc rather than the system allocator: span data is allocated on the request threads and
/// freed on the export thread, which mimalloc does without the cross-thread cost of glibc's
/// malloc (BENCHMARKS.md, "Where the time goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tutorial_common::server::run_main("notes", notes::Application::build)
}
