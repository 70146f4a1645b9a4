//! Logging setup: journald when stderr is the journal (`JOURNAL_STREAM`), else stderr; the
//! `log` records of our dependencies (russh) go through the same filter, with what is known
//! to be harmless lowered to debug.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// Installs the global subscriber. `RUST_LOG` overrides the verbosity flags.
pub fn init(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "filesync=debug,info",
        _ => "filesync=trace,debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    #[cfg(target_os = "linux")]
    let journald = std::env::var_os("JOURNAL_STREAM")
        .is_some()
        .then(tracing_journald::layer)
        .and_then(Result::ok)
        .map(|j| j.with_syslog_identifier("filesync".into()));
    // No journal elsewhere: stderr (launchd's StandardErrorPath, a console).
    #[cfg(not(target_os = "linux"))]
    let journald: Option<tracing_subscriber::layer::Identity> = None;
    // Ours before the subscriber's: a `log` bridge it would install itself must not win.
    let bridged = log::set_logger(&FROM_LOG).is_ok();
    let _ = match journald {
        Some(j) => tracing_subscriber::registry()
            .with(filter)
            .with(j)
            .try_init(),
        None => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_target(false)
                    .compact(),
            )
            .try_init(),
    };
    if bridged {
        // As tracing's own `log` bridge does: records below what any filter lets through are
        // not even made (russh traces every packet).
        use tracing::level_filters::LevelFilter as L;
        log::set_max_level(match L::current() {
            L::OFF => log::LevelFilter::Off,
            L::ERROR => log::LevelFilter::Error,
            L::WARN => log::LevelFilter::Warn,
            L::INFO => log::LevelFilter::Info,
            L::DEBUG => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        });
    }
}

/// Channel requests some clients send that SSH lets a server refuse without harm; russh warns
/// of each ("unknown channel request …"), which on the hub is noise in every PuTTY session.
const HARMLESS: &[&str] = &["unknown channel request simple@putty.projects.tartarus.org"];

/// Hands `log` records to tracing, lowering the harmless ones to debug.
struct FromLog;

static FROM_LOG: FromLog = FromLog;

fn lowered(record: &log::Record<'_>) -> log::Level {
    if record.level() <= log::Level::Info {
        let text = record.args().to_string();
        if HARMLESS.iter().any(|h| text.starts_with(h)) {
            return log::Level::Debug;
        }
    }
    record.level()
}

impl log::Log for FromLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = lowered(record);
        let _ = tracing_log::format_trace(
            &log::Record::builder()
                .level(level)
                .target(record.target())
                .args(*record.args())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_harmless_warnings_are_lowered() {
        let lowered_of = |level: log::Level, msg: &str| {
            lowered(
                &log::Record::builder()
                    .level(level)
                    .target("russh::server::encrypted")
                    .args(format_args!("{msg}"))
                    .build(),
            )
        };
        assert_eq!(
            lowered_of(
                log::Level::Warn,
                "unknown channel request simple@putty.projects.tartarus.org"
            ),
            log::Level::Debug
        );
        assert_eq!(
            lowered_of(log::Level::Warn, "unknown channel request something-else"),
            log::Level::Warn
        );
        assert_eq!(lowered_of(log::Level::Error, "boom"), log::Level::Error);
    }
}
