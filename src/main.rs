//! The `filesync` binary: parse the command line, set up logging, run the command.

use clap::Parser;
use filesync::app::cli::Cli;

fn main() {
    let cli = Cli::parse();
    filesync::app::logging::init(cli.verbose, cli.quiet);
    match filesync::app::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("filesync: error: {e:#}");
            std::process::exit(1);
        }
    }
}
