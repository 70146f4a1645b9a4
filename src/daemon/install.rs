//! The files that start the daemon at login (systemd user unit, launchd agent, Windows
//! Startup-folder script), made from the paths alone; writing and enabling them is the CLI's.

/// What the daemon started at login runs: all paths absolute and UTF-8.
#[derive(Debug, Clone)]
pub struct Launch {
    pub bin: String,
    pub config: String,
    pub root: Option<String>,
}

impl Launch {
    /// The arguments after the binary.
    fn args(&self) -> Vec<&str> {
        let mut a = vec!["daemon", "--config", &self.config];
        if let Some(r) = &self.root {
            a.extend(["--root", r.as_str()]);
        }
        a
    }
}

const UNIT: &str = include_str!("../../systemd/filesync-user.service");
const PLIST: &str = include_str!("../../launchd/org.filesync.daemon.plist");

/// systemd escapes: `%` specifiers and `$` variables are taken literally when doubled.
fn systemd_literal(s: &str) -> String {
    s.replace('%', "%%").replace('$', "$$")
}

fn systemd_quoted(s: &str) -> String {
    let s = systemd_literal(s)
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!("\"{s}\"")
}

/// `systemd/filesync-user.service` running `l` (installed as `filesync.service`).
pub fn systemd_unit(l: &Launch) -> String {
    let exec: Vec<String> = std::iter::once(l.bin.as_str())
        .chain(l.args())
        .map(systemd_quoted)
        .collect();
    UNIT.lines()
        .map(|line| {
            if line.starts_with("ExecStart=") {
                format!("ExecStart={}", exec.join(" "))
            } else if line.starts_with("ConditionPathExists=") {
                format!("ConditionPathExists={}", systemd_literal(&l.config))
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `launchd/org.filesync.daemon.plist` running `l`, its log under `home`, without the
/// template's how-to comment.
pub fn launchd_plist(l: &Launch, home: &str) -> String {
    let body = match (PLIST.find("<!--"), PLIST.find("-->\n")) {
        (Some(a), Some(b)) if a < b => format!("{}{}", &PLIST[..a], &PLIST[b + 4..]),
        _ => PLIST.to_string(),
    };
    let args: String = std::iter::once(l.bin.as_str())
        .chain(l.args())
        .map(|a| format!("        <string>{}</string>\n", xml(a)))
        .collect();
    let (Some(start), Some(end)) = (body.find("<array>\n"), body.find("    </array>")) else {
        return body.replace("@HOME@", &xml(home));
    };
    format!(
        "{}<array>\n{args}{}",
        &body[..start],
        &body[end..].replace("@HOME@", &xml(home))
    )
}

/// A Startup-folder `.cmd` that starts the daemon minimised at login.
pub fn windows_cmd(l: &Launch) -> String {
    // In a batch file `%` starts a variable; Windows paths cannot hold `"`.
    let q = |s: &str| format!("\"{}\"", s.replace('%', "%%"));
    let args: Vec<String> = l.args().into_iter().map(q).collect();
    format!(
        "@rem filesync daemon at login (filesync daemon --install); delete this file to stop it.\r\n\
         @start \"filesync\" /min {} {}\r\n",
        q(&l.bin),
        args.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(root: Option<&str>) -> Launch {
        Launch {
            bin: "/opt/file sync/bin/filesync".into(),
            config: "/home/u/100%/config.toml".into(),
            root: root.map(Into::into),
        }
    }

    #[test]
    fn the_unit_runs_the_installed_binary_with_its_config_and_root() {
        let u = systemd_unit(&launch(Some("/home/u/My $Sync")));
        assert!(u.contains(
            "\nExecStart=\"/opt/file sync/bin/filesync\" \"daemon\" \"--config\" \
             \"/home/u/100%%/config.toml\" \"--root\" \"/home/u/My $$Sync\"\n"
        ));
        assert!(u.contains("\nConditionPathExists=/home/u/100%%/config.toml\n"));
        assert!(!u.contains("/usr/bin/filesync") && !u.contains("%h/"));
        // The rest of the unit is the template's.
        assert!(u.contains("\nWatchdogSec=30\n") && u.contains("\nWantedBy=default.target\n"));
        let plain = systemd_unit(&launch(None));
        assert!(!plain.contains("--root"));
    }

    #[test]
    fn the_plist_lists_each_argument_and_fills_in_home() {
        let p = launchd_plist(&launch(Some("/Users/u/A&B")), "/Users/u");
        let args = "<array>\n        <string>/opt/file sync/bin/filesync</string>\n        \
            <string>daemon</string>\n        <string>--config</string>\n        \
            <string>/home/u/100%/config.toml</string>\n        <string>--root</string>\n        \
            <string>/Users/u/A&amp;B</string>\n    </array>";
        assert!(p.contains(args), "{p}");
        assert!(p.contains("<string>/Users/u/Library/Logs/filesync.log</string>"));
        assert!(!p.contains('@') && !p.contains("<!--\n"), "{p}");
        assert!(p.starts_with("<?xml") && p.trim_end().ends_with("</plist>"));
        assert!(p.contains("<key>RunAtLoad</key>"));
    }

    #[test]
    fn the_startup_script_quotes_paths_and_doubles_percent() {
        let l = Launch {
            bin: r"C:\Program Files\filesync\filesync.exe".into(),
            config: r"C:\Users\u\%APPDATA%\config.toml".into(),
            root: Some(r"D:\My Sync".into()),
        };
        let c = windows_cmd(&l);
        assert!(
            c.ends_with(
                "@start \"filesync\" /min \"C:\\Program Files\\filesync\\filesync.exe\" \"daemon\" \
             \"--config\" \"C:\\Users\\u\\%%APPDATA%%\\config.toml\" \"--root\" \"D:\\My Sync\"\r\n"
            ),
            "{c}"
        );
        assert!(!windows_cmd(&launch(None)).contains("--root"));
    }
}
