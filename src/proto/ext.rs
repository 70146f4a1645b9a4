//! The names of the SFTP extensions we speak, each once: OpenSSH's, and our own `@filesync`
//! ones (see `crate::server::batch` for what ours do).

pub const POSIX_RENAME: &str = "posix-rename@openssh.com";
pub const STATVFS: &str = "statvfs@openssh.com";
pub const FSTATVFS: &str = "fstatvfs@openssh.com";
pub const HARDLINK: &str = "hardlink@openssh.com";
pub const FSYNC: &str = "fsync@openssh.com";
pub const LIMITS: &str = "limits@openssh.com";

/// Brings the server's `.sync` up to date in place (its reply lists what it could not read).
pub const INDEX_REFRESH: &str = "index-refresh@filesync";
/// Many small files to new temp names in one request.
pub const WRITE_FILES: &str = "write-files@filesync";
/// The same, each file with its permission bits.
pub const WRITE_FILES_WITH_MODE: &str = "write-files-with-mode@filesync";
/// Temps made durable together and put in place, what they replace kept in the trash.
pub const INSTALL_FILES: &str = "install-files@filesync";
/// Many small files whole in one reply.
pub const READ_FILES: &str = "read-files@filesync";

/// What our server announces in its VERSION reply: each name with its version.
pub const OFFERED: &[(&str, &str)] = &[
    (POSIX_RENAME, "1"),
    (STATVFS, "2"),
    (FSTATVFS, "2"),
    (HARDLINK, "1"),
    (FSYNC, "1"),
    (LIMITS, "1"),
    (INDEX_REFRESH, "1"),
    (WRITE_FILES, "1"),
    (WRITE_FILES_WITH_MODE, "1"),
    (INSTALL_FILES, "1"),
    (READ_FILES, "1"),
];
