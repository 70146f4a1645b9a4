//! The `filesync` binary: parse the command line, set up logging, run the command.

use clap::Parser;
use filesync::app::cli::Cli;

fn main() {
    let cli = Cli::parse();
    filesync::app::logging::init(cli.verbose, cli.quiet);
    match filesync::app::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // Each cause once: a variant that shows its cause's words is not followed by them.
            let e: &(dyn std::error::Error + 'static) = e.as_ref();
            eprintln!("filesync: error: {}", filesync::store::Chain(e));
            std::process::exit(1);
        }
    }
}
