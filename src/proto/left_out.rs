//! What an index refresh (`index-refresh@filesync`) left as it was, as the outcomes of its
//! reply: the paths the server's scan could not read, the files its clients are still writing,
//! and what the scan leaves out by nature (the first `ext::REFRESH_SKIPPED_NAMED` by name,
//! then a count per reason). Encoded by the server, decoded by the client store; nothing else.

use super::ext::{REFRESH_SKIPPED, REFRESH_SKIPPED_MORE, REFRESH_SKIPPED_NAMED, REFRESH_TOKEN};
use super::{FX_FAILURE, FX_OK, Malformed, Outcome};
use crate::relpath::RelPath;
use crate::scan::{Skip, Skipped};
use bytes::Bytes;

/// SFTP version 6's "lock conflict": in a refresh reply, a file still being written.
const FX_LOCK_CONFLICT: u32 = 17;

/// What the refresh left as it was, for the client to report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Paths the scan could not read, and why.
    pub unreadable: Vec<(RelPath, String)>,
    /// Files a client of the server still has open for writing: offered once closed.
    pub writing: Vec<RelPath>,
    /// What the scan leaves out by nature (links, odd names, …), by name…
    pub skipped: Vec<Skipped>,
    /// …and past what a reply names, a count per reason.
    pub skipped_more: Vec<(Skip, u64)>,
    /// The state of the index files after the refresh, for a client that asked for it.
    pub token: Option<[u8; 32]>,
}

/// The reply: OK when nothing was left out and no token is given, else one batch-reply
/// outcome per path (and one for the token).
pub fn reply(id: u32, left: Report) -> Bytes {
    if left.unreadable.is_empty()
        && left.writing.is_empty()
        && left.skipped.is_empty()
        && left.token.is_none()
    {
        return super::status(id, FX_OK, "OK");
    }
    let token = left.token.map(|t| Outcome {
        code: REFRESH_TOKEN,
        msg: "token".into(),
        data: Bytes::copy_from_slice(&t),
    });
    let unreadable = left.unreadable.into_iter().map(|(p, why)| Outcome {
        code: FX_FAILURE,
        msg: why,
        data: Bytes::from(p.as_str().to_owned()),
    });
    let writing = left.writing.into_iter().map(|p| Outcome {
        code: FX_LOCK_CONFLICT,
        msg: "being written".into(),
        data: Bytes::from(p.as_str().to_owned()),
    });
    let outcomes: Vec<Outcome> = unreadable
        .chain(writing)
        .chain(encode(left.skipped))
        .chain(token)
        .collect();
    super::batch_reply(id, &outcomes)
}

/// What a refresh reply's payload (after the request id) says was left out; a path that is
/// not one (from a server we do not understand) makes the reply malformed, a reason from a
/// newer server is dropped.
pub fn decode_reply(data: &Bytes) -> Result<Report, Malformed> {
    let mut left = Report::default();
    let mut skips = Vec::new();
    for o in super::decode_batch_reply(data)? {
        if o.code == REFRESH_TOKEN {
            left.token = Some(<[u8; 32]>::try_from(o.data.as_ref()).map_err(|_| Malformed)?);
            continue;
        }
        if matches!(o.code, REFRESH_SKIPPED | REFRESH_SKIPPED_MORE) {
            skips.push(o);
            continue;
        }
        let path = std::str::from_utf8(&o.data).map_err(|_| Malformed)?;
        let path = RelPath::parse(path).map_err(|_| Malformed)?;
        match o.code {
            FX_LOCK_CONFLICT => left.writing.push(path),
            _ => left.unreadable.push((path, o.msg)),
        }
    }
    (left.skipped, left.skipped_more) = decode(skips);
    Ok(left)
}

/// The outcomes that carry `skipped`.
fn encode(skipped: Vec<Skipped>) -> Vec<Outcome> {
    let mut more: Vec<(Skip, u64)> = Vec::new();
    for s in skipped.iter().skip(REFRESH_SKIPPED_NAMED) {
        match more.iter_mut().find(|(k, _)| *k == s.why) {
            Some((_, n)) => *n += 1,
            None => more.push((s.why, 1)),
        }
    }
    let named = skipped.into_iter().take(REFRESH_SKIPPED_NAMED);
    let named = named.map(|s| Outcome {
        code: REFRESH_SKIPPED,
        msg: s.why.keyword().to_owned(),
        data: Bytes::from(s.path),
    });
    let more = more.into_iter().map(|(k, n)| Outcome {
        code: REFRESH_SKIPPED_MORE,
        msg: k.keyword().to_owned(),
        data: Bytes::copy_from_slice(&n.to_be_bytes()),
    });
    named.chain(more).collect()
}

/// The paths named, sorted, and the counts of those that were not; what does not parse (a
/// reason from a newer server) is dropped.
fn decode(outcomes: Vec<Outcome>) -> (Vec<Skipped>, Vec<(Skip, u64)>) {
    let mut named = Vec::new();
    let mut more = Vec::new();
    for o in outcomes {
        let Some(why) = Skip::from_keyword(&o.msg) else {
            continue;
        };
        match o.code {
            REFRESH_SKIPPED => named.push(Skipped {
                path: o.data.to_vec(),
                why,
            }),
            REFRESH_SKIPPED_MORE => {
                if let Ok(n) = <[u8; 8]>::try_from(o.data.as_ref()) {
                    more.push((why, u64::from_be_bytes(n)));
                }
            }
            _ => {}
        }
    }
    named.sort();
    (named, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_encoded_decodes_the_same_and_past_the_cap_as_counts() {
        let mut all: Vec<Skipped> = (0..REFRESH_SKIPPED_NAMED + 3)
            .map(|i| Skipped {
                path: format!("l{i:05}").into_bytes(),
                why: Skip::Link,
            })
            .collect();
        all.push(Skipped {
            path: b"caf\xe9".to_vec(),
            why: Skip::NotUtf8,
        });
        let outcomes = encode(all.clone());
        let (named, more) = decode(outcomes);
        assert_eq!(named, all[..REFRESH_SKIPPED_NAMED]);
        assert_eq!(more, [(Skip::Link, 3), (Skip::NotUtf8, 1)]);
        assert_eq!(
            decode(encode(all[..2].to_vec())),
            (all[..2].to_vec(), vec![])
        );
    }

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    #[test]
    fn replies_round_trip() {
        assert_eq!(reply(3, Report::default())[4], super::super::FXP_STATUS);
        let left = Report {
            unreadable: vec![(p("a/secret"), "Permission denied (os error 13)".into())],
            writing: vec![p("DCIM/big.jpg")],
            skipped: vec![Skipped {
                path: b"caf\xe9".to_vec(),
                why: Skip::NotUtf8,
            }],
            skipped_more: vec![],
            token: None,
        };
        let bytes = reply(3, left.clone());
        assert_eq!(bytes[4], super::super::FXP_EXTENDED_REPLY);
        assert_eq!(decode_reply(&bytes.slice(9..)).unwrap(), left);
        // A token comes back, with the paths or alone.
        for left in [
            Report {
                token: Some([7; 32]),
                ..left
            },
            Report {
                token: Some([9; 32]),
                ..Report::default()
            },
        ] {
            let bytes = reply(3, left.clone());
            assert_eq!(bytes[4], super::super::FXP_EXTENDED_REPLY);
            assert_eq!(decode_reply(&bytes.slice(9..)).unwrap(), left);
        }
    }
}
