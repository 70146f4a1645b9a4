//! What this machine is: its name, whether a process of it is alive, where this program keeps
//! its state, and where its daemons listen.

#[cfg(unix)]
pub mod socket;

use std::path::{Path, PathBuf};

/// This machine's name, from uname(2): /proc/sys is hidden inside the hardened unit
/// (ProcSubset=pid), and a lock must name its host the same way inside and outside it.
#[cfg(unix)]
pub fn hostname() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .trim()
        .to_string();
    if name.is_empty() {
        "unknown-host".into()
    } else {
        name
    }
}

/// This machine's name, as Windows keeps it for the computer (`COMPUTERNAME`).
#[cfg(windows)]
pub fn hostname() -> String {
    match std::env::var("COMPUTERNAME") {
        Ok(n) if !n.trim().is_empty() => n.trim().to_string(),
        _ => "unknown-host".into(),
    }
}

/// This program's state folder: systemd's (the hub unit's `StateDirectory`), else the user's
/// XDG state folder (never inside a synced folder, which is shared). The server's default
/// (`[server] state_dir`), and where syncs keep the pairs they left settled.
pub fn state_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|v| !v.is_empty()) {
        // systemd may pass several folders separated by `:`; the first is ours.
        return dir.to_string_lossy().split(':').next().map(PathBuf::from);
    }
    // A relative XDG_STATE_HOME is invalid per the XDG spec and is ignored.
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| Path::new(v).is_absolute())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("filesync"))
}

/// The user's home folder: `$HOME`, and on Windows `%USERPROFILE%` where HOME is unset (where
/// OpenSSH for Windows keeps `.ssh`).
pub fn home_dir() -> Option<std::path::PathBuf> {
    let var = |k| std::env::var_os(k).filter(|v: &std::ffi::OsString| !v.is_empty());
    let home = var("HOME");
    #[cfg(windows)]
    let home = home.or_else(|| var("USERPROFILE"));
    home.map(std::path::PathBuf::from)
}

/// Whether process `pid` of this machine (this pid namespace) is alive.
#[cfg(target_os = "linux")]
pub fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether process `pid` of this machine is alive (no `/proc` here): signal 0 checks it
/// exists; `EPERM` means it does, as another user's.
#[cfg(all(unix, not(target_os = "linux")))]
pub fn pid_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// Whether process `pid` of this machine is alive: it can be opened and has not exited. One
/// that cannot be opened for lack of rights (another user's) exists.
#[cfg(windows)]
pub fn pid_alive(pid: u32) -> bool {
    use windows_sys::Win32::Foundation::{CloseHandle, ERROR_ACCESS_DENIED, GetLastError};
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };
    const STILL_ACTIVE: u32 = 259;
    // SAFETY: OpenProcess takes no pointers; a non-null handle is ours to query and close.
    unsafe {
        let h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
        if h.is_null() {
            return GetLastError() == ERROR_ACCESS_DENIED;
        }
        let mut code = 0u32;
        let ok = GetExitCodeProcess(h, &mut code) != 0;
        CloseHandle(h);
        !ok || code == STILL_ACTIVE
    }
}

/// systemd's readiness protocol where systemd exists (Linux); elsewhere no service manager
/// listens, and the same calls do nothing.
#[cfg(target_os = "linux")]
pub use ::sd_notify;

#[cfg(not(target_os = "linux"))]
pub mod sd_notify {
    //! The few `sd_notify` calls the daemon makes, as no-ops.

    pub enum NotifyState<'a> {
        Ready,
        Reloading,
        Stopping,
        Status(&'a str),
        Watchdog,
        MonotonicUsec(u64),
    }

    impl NotifyState<'_> {
        pub fn monotonic_usec_now() -> std::io::Result<Self> {
            Ok(NotifyState::MonotonicUsec(0))
        }
    }

    pub fn notify(_: &[NotifyState]) -> std::io::Result<()> {
        Ok(())
    }

    pub fn watchdog_enabled() -> Option<std::time::Duration> {
        None
    }
}

/// Hands the system back memory the allocator keeps but no longer uses: glibc holds on to
/// freed heap, and loading, scanning or writing a big index frees tens of MiB at once.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Lets the allocator keep few arenas: glibc gives threads that allocate at once (tokio's
/// workers, rayon's during a scan) arenas of their own, and what is freed in one is not
/// reused by the others, so a long-running process holds more than it uses.
pub fn limit_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a number in the allocator's parameters; it takes no pointers,
    // and it runs before the threads that would allocate in more arenas exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// `fs.inotify.max_user_watches`, where the system says (Linux).
pub fn inotify_watch_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A line saying what to do when `folders` inotify watches (one per folder) will not fit
/// in `limit`, with room left for the rest of the system; `None` when they fit.
pub fn watch_limit_hint(folders: u64, limit: u64) -> Option<String> {
    let wanted = folders.saturating_add(folders / 4).saturating_add(1024);
    (wanted > limit).then(|| {
        format!(
            "{folders} folders to watch, and fs.inotify.max_user_watches is {limit}: raise it \
             (`echo fs.inotify.max_user_watches={wanted} | sudo tee /etc/sysctl.d/90-filesync.conf \
             && sudo sysctl --system`) or changes are found by periodic rescans only"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_hint_speaks_only_when_the_folders_do_not_fit() {
        assert_eq!(watch_limit_hint(1_000, 65_536), None);
        let hint = watch_limit_hint(100_000, 65_536).unwrap();
        assert!(hint.contains("max_user_watches=126024"), "{hint}");
        assert!(watch_limit_hint(u64::MAX, u64::MAX - 1).is_some());
        release_free_memory();
    }
}
