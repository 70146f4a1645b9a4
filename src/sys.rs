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
pub fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
