//! The names of the SFTP extensions we speak, each once: OpenSSH's, and our own `@filesync`
//! ones (see `crate::server::batch` for what ours do).

pub const POSIX_RENAME: &str = "posix-rename@openssh.com";
pub const STATVFS: &str = "statvfs@openssh.com";
pub const FSTATVFS: &str = "fstatvfs@openssh.com";
pub const HARDLINK: &str = "hardlink@openssh.com";
pub const FSYNC: &str = "fsync@openssh.com";
pub const LIMITS: &str = "limits@openssh.com";
/// Copies a range of one open file into another on the server (OpenSSH 9.0 on).
pub const COPY_DATA: &str = "copy-data";

/// Brings the server's `.sync` up to date in place (its reply lists what it could not read).
/// A client that reads `.sync.journal` says so with `REFRESH_READS_JOURNAL` as the request's
/// data; to any other (an older filesync sends nothing) the server hands `.sync` whole, its
/// journal folded in, since such a client reads `.sync` alone.
pub const INDEX_REFRESH: &str = "index-refresh@filesync";
/// The request data of a refresh by a client that reads the journal: the SSH string
/// "journal".
pub const REFRESH_READS_JOURNAL: &[u8] = b"\0\0\0\x07journal";
/// The request data of a refresh by a client that also wants the state of the index files
/// after it (`index::journal::Token`), to stop before loading an index it already settled
/// with: the SSH string "journal,token". Servers from version 3 answer it.
pub const REFRESH_WITH_TOKEN: &[u8] = b"\0\0\0\x0djournal,token";
/// The code of the outcome in that reply that carries the token: "token" as its message, the
/// 32 bytes as its data.
pub const REFRESH_TOKEN: u32 = 0x5346_0003;
/// The code of an outcome in that reply for a path the scan left out rather than could not
/// read (a symlink, a name that is not UTF-8, ...): the reason's keyword as its message, the
/// path's bytes as its data. Outside SFTP's status codes, so no status is mistaken for it.
pub const REFRESH_SKIPPED: u32 = 0x5346_0001;
/// At most this many paths left out are named in one reply (a tree of links must not outgrow
/// a packet); past it, one `REFRESH_SKIPPED_MORE` outcome per reason says how many more: the
/// keyword as its message, the count as its data (u64, big-endian).
pub const REFRESH_SKIPPED_NAMED: usize = 1000;
pub const REFRESH_SKIPPED_MORE: u32 = 0x5346_0002;
/// Many small files to new temp names in one request.
pub const WRITE_FILES: &str = "write-files@filesync";
/// The same, each file with its permission bits.
pub const WRITE_FILES_WITH_MODE: &str = "write-files-with-mode@filesync";
/// Temps made durable together and put in place, what they replace kept in the trash.
pub const INSTALL_FILES: &str = "install-files@filesync";
/// The BLAKE3 of an open file's content (32 bytes in the reply): a delta upload checks the
/// file it assembled before it puts it in place.
pub const BLAKE3: &str = "blake3@filesync";
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
    (COPY_DATA, "1"),
    (INDEX_REFRESH, "3"),
    (WRITE_FILES, "1"),
    (WRITE_FILES_WITH_MODE, "1"),
    (INSTALL_FILES, "1"),
    (READ_FILES, "1"),
    (BLAKE3, "1"),
];
