//! `notes`: the notes service. `notes healthcheck` checks a running instance (for Docker).

fn main() -> std::process::ExitCode {
    tutorial_common::server::run_main("notes", notes::Application::build)
}
