//! `tracecat`: see `tracecat --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(arg) => {
                eprintln!("tracecat: argument {arg:?} is not valid UTF-8");
                return ExitCode::from(2);
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    tracecat::cli::main(&args, &mut stdout)
}
