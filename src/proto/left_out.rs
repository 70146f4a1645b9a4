//! What the server's scan left out, as outcomes of the `index-refresh@filesync` reply: the
//! first `ext::REFRESH_SKIPPED_NAMED` paths by name, then a count per reason. Encoded by the
//! server, decoded by the client store; nothing else.

use super::Outcome;
use super::ext::{REFRESH_SKIPPED, REFRESH_SKIPPED_MORE, REFRESH_SKIPPED_NAMED};
use crate::scan::{Skip, Skipped};
use bytes::Bytes;

/// The outcomes that carry `skipped`.
pub fn encode(skipped: Vec<Skipped>) -> Vec<Outcome> {
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

/// Whether an outcome of the reply is one of these (the others name unreadable paths).
pub fn is_left_out(o: &Outcome) -> bool {
    matches!(o.code, REFRESH_SKIPPED | REFRESH_SKIPPED_MORE)
}

/// The paths named, sorted, and the counts of those that were not; what does not parse (a
/// reason from a newer server) is dropped.
pub fn decode(outcomes: Vec<Outcome>) -> (Vec<Skipped>, Vec<(Skip, u64)>) {
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
        assert!(outcomes.iter().all(is_left_out));
        let (named, more) = decode(outcomes);
        assert_eq!(named, all[..REFRESH_SKIPPED_NAMED]);
        assert_eq!(more, [(Skip::Link, 3), (Skip::NotUtf8, 1)]);
        assert_eq!(
            decode(encode(all[..2].to_vec())),
            (all[..2].to_vec(), vec![])
        );
    }
}
