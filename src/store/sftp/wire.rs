//! SFTP on the wire as the store needs it: the client's errors turned into `io::Error`s callers
//! branch on, attributes read as what a scan observes, and the small encodings extensions use.

use crate::index::{Kind, MTime};
use crate::scan::Observed;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, Packet, StatusCode};
use std::io;

/// "No such file" reads as "no such file" after a colon; "EOF" and a message that names a path
/// further on keep their case (a path is case-sensitive).
pub(crate) fn sentence_case(msg: String) -> String {
    let mut c = msg.chars();
    match (c.next(), c.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => {
            first.to_lowercase().chain(msg.chars().skip(1)).collect()
        }
        _ => msg,
    }
}

/// Turns an SFTP client error into an `io::Error` whose kind callers can branch on.
pub(crate) fn to_io(e: SftpError) -> io::Error {
    use io::ErrorKind as K;
    match e {
        SftpError::Status(s) => {
            let kind = match s.status_code {
                StatusCode::NoSuchFile => K::NotFound,
                StatusCode::PermissionDenied => K::PermissionDenied,
                StatusCode::Eof => K::UnexpectedEof,
                StatusCode::NoConnection | StatusCode::ConnectionLost => K::ConnectionAborted,
                StatusCode::OpUnsupported => K::Unsupported,
                _ => K::Other,
            };
            let msg = if s.error_message.is_empty() {
                s.status_code.to_string()
            } else {
                s.error_message
            };
            io::Error::new(kind, sentence_case(msg))
        }
        SftpError::Timeout => io::Error::new(K::TimedOut, "the server did not answer in time"),
        SftpError::IO(m) => io::Error::new(K::ConnectionAborted, format!("connection lost ({m})")),
        SftpError::UnexpectedBehavior(m)
            if m.contains("sender dropped") || m.contains("session closed") =>
        {
            io::Error::new(K::ConnectionAborted, "connection lost")
        }
        other => io::Error::other(other.to_string()),
    }
}

pub(crate) fn is_status(e: &SftpError, code: StatusCode) -> bool {
    matches!(e, SftpError::Status(s) if s.status_code == code)
}

pub(crate) fn observed_of(a: &FileAttributes) -> Option<Observed> {
    let t = a.file_type();
    let kind = if t.is_file() {
        Kind::File
    } else if t.is_dir() {
        Kind::Dir
    } else {
        return None;
    };
    Some(Observed {
        kind,
        size: if kind == Kind::File { a.len() } else { 0 },
        mtime: MTime::new(i64::from(a.mtime.unwrap_or(0)), 0),
        mode: a.permissions.map(crate::index::mode::perm_bits),
    })
}

/// SFTP v3 times are unsigned 32-bit seconds.
pub(crate) fn sftp_time(t: MTime) -> u32 {
    t.secs.clamp(0, i64::from(u32::MAX)) as u32
}

/// An SSH string: u32 length, then the bytes.
pub(crate) fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

pub(crate) fn status_ok(p: Packet) -> Result<(), SftpError> {
    match p {
        Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(()),
        Packet::Status(s) => Err(SftpError::Status(s)),
        _ => Err(SftpError::UnexpectedPacket),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_keep_the_case_of_what_they_name() {
        let s = |m: &str| sentence_case(m.to_string());
        assert_eq!(s("No such file"), "no such file");
        assert_eq!(s("EOF"), "EOF");
        assert_eq!(
            s("cannot open /tmp/MyRoot/.sync: No such file"),
            "cannot open /tmp/MyRoot/.sync: No such file"
        );
        assert_eq!(
            s("Run `filesync index --root /A/B`"),
            "run `filesync index --root /A/B`"
        );
        assert_eq!(s(""), "");
    }
}
