//! `calendar`: the calendar service. `calendar healthcheck` checks a running instance (for Docker).

fn main() -> std::process::ExitCode {
    tutorial_common::server::run_main("calendar", calendar::Application::build)
}
