//! What this machine is: its name, and whether a process of it is alive.

/// This machine's name, from uname(2): /proc/sys is hidden inside the hardened unit
/// (ProcSubset=pid), and a lock must name its host the same way inside and outside it.
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

/// Whether process `pid` of this machine (this pid namespace) is alive.
#[cfg(target_os = "linux")]
pub fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether process `pid` of this machine is alive (no `/proc` here): signal 0 checks it
/// exists; `EPERM` means it does, as another user's.
#[cfg(not(target_os = "linux"))]
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
