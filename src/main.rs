//! The `filesync` binary: parse the command line, set up logging, run the command.

use clap::Parser;
use filesync::cli::Cli;

fn main() {
    let cli = Cli::parse();
    filesync::logging::init(cli.verbose, cli.quiet);
    match filesync::commands::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("filesync: error: {e:#}");
            std::process::exit(1);
        }
    }
}
