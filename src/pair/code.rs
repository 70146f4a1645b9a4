//! Pairing codes (`XXXX-XXXX-XXXX`) and the hub's book of the ones it handed out: single use,
//! a fixed lifetime, burnt after a few wrong tries. Pure: the caller passes the time.

use std::time::{Duration, Instant};

/// Crockford's base32: no I, L, O or U, so a code read aloud or off a screen is typed right.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters in a code: the first four name it (sent in the clear, inside SSH), all twelve
/// are the password the key exchange runs on (60 bits; 40 of them never leave either end).
const LEN: usize = 12;
const ID_LEN: usize = 4;

/// How long a code stays usable.
pub const LIFETIME: Duration = Duration::from_secs(600);
/// Tries a code allows: each lookup takes one (so concurrent guesses count too), only a
/// success gives it back by using the code up.
pub const MAX_WRONG: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code(String);

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0:?} is not a pairing code: it has 12 letters and digits, like 7KQ2-M9XD-4TPA")]
pub struct BadCode(pub String);

impl Code {
    pub fn random() -> Code {
        // The thread's generator is a CSPRNG seeded from the OS.
        Code(
            (0..LEN)
                .map(|_| ALPHABET[rand::random_range(0..32usize)] as char)
                .collect(),
        )
    }

    /// Reads a code as a person typed it: any case, dashes or spaces anywhere, and the
    /// letters Crockford maps (O→0, I/L→1).
    pub fn parse(text: &str) -> Result<Code, BadCode> {
        let mut out = String::new();
        for c in text.chars() {
            let c = match c.to_ascii_uppercase() {
                '-' | ' ' => continue,
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            };
            if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
                return Err(BadCode(text.to_string()));
            }
            out.push(c);
        }
        if out.len() != LEN {
            return Err(BadCode(text.to_string()));
        }
        Ok(Code(out))
    }

    /// Whether `id` could name a code: four Crockford characters as the laptop sends them
    /// (checked before it is logged or looked up).
    pub fn valid_id(id: &str) -> bool {
        id.len() == ID_LEN && id.bytes().all(|b| ALPHABET.contains(&b))
    }

    /// The part that tells the hub which of its codes is meant.
    pub fn id(&self) -> &str {
        &self.0[..ID_LEN]
    }

    /// What the key exchange runs on.
    pub fn secret(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", &self.0[..4], &self.0[4..8], &self.0[8..])
    }
}

/// What a pairing with a code sets up on the hub, chosen when the code was made.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Terms {
    /// The device's name on the hub (else the one the laptop proposes).
    pub name: Option<String>,
    /// How often the hub pulls from a laptop that serves (`--serve`).
    pub every: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Invitation {
    pub code: Code,
    pub terms: Terms,
    pub expires: Instant,
    /// Tries taken so far (lookups not followed by a success).
    tries: u32,
}

/// What became of a code someone asked for.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    Found(Code, Terms),
    /// No code of that id (never made, used, burnt, or expired long ago).
    Unknown,
    Expired,
}

/// What a wrong answer did to its code.
#[derive(Debug, PartialEq)]
pub enum Wrong {
    TriesLeft(u32),
    Burnt,
    Gone,
}

/// The codes the hub handed out and has not seen used.
#[derive(Debug, Default)]
pub struct Invitations {
    list: Vec<Invitation>,
}

impl Invitations {
    /// A new code, usable until `now + lifetime`.
    pub fn issue(&mut self, terms: Terms, now: Instant, lifetime: Duration) -> Invitation {
        self.prune(now);
        let code = loop {
            let c = Code::random();
            if !self.list.iter().any(|i| i.code.id() == c.id()) {
                break c;
            }
        };
        self.add(code, terms, now + lifetime)
    }

    /// A code made elsewhere (the boot partition's); replaces one of the same id.
    pub fn add(&mut self, code: Code, terms: Terms, expires: Instant) -> Invitation {
        self.add_tried(code, terms, expires, 0)
    }

    /// `add` for a code that already had `tries` taken (before a restart).
    pub fn add_tried(
        &mut self,
        code: Code,
        terms: Terms,
        expires: Instant,
        tries: u32,
    ) -> Invitation {
        self.list.retain(|i| i.code.id() != code.id());
        let inv = Invitation {
            code,
            terms,
            expires,
            tries,
        };
        self.list.push(inv.clone());
        inv
    }

    /// Expired codes are kept a lifetime longer so that asking for one says "expired".
    fn prune(&mut self, now: Instant) {
        self.list.retain(|i| i.expires + LIFETIME > now);
    }

    /// Takes a try at code `id`: a code whose tries are all taken is burnt (gone).
    pub fn lookup(&mut self, id: &str, now: Instant) -> Lookup {
        self.prune(now);
        let Some(pos) = self.list.iter().position(|i| i.code.id() == id) else {
            return Lookup::Unknown;
        };
        let i = &mut self.list[pos];
        if i.expires <= now {
            return Lookup::Expired;
        }
        if i.tries >= MAX_WRONG {
            self.list.remove(pos);
            return Lookup::Unknown;
        }
        i.tries += 1;
        Lookup::Found(i.code.clone(), i.terms.clone())
    }

    /// A try at code `id` that did not succeed (its try stays taken): what is left of it.
    pub fn wrong(&mut self, id: &str) -> Wrong {
        let Some(pos) = self.list.iter().position(|i| i.code.id() == id) else {
            return Wrong::Gone;
        };
        let tries = self.list[pos].tries;
        if tries >= MAX_WRONG {
            self.list.remove(pos);
            Wrong::Burnt
        } else {
            Wrong::TriesLeft(MAX_WRONG - tries)
        }
    }

    /// Uses code `id` up; false when it is no longer there (used, burnt or expired meanwhile).
    pub fn consume(&mut self, id: &str, now: Instant) -> bool {
        let before = self.list.len();
        self.list
            .retain(|i| !(i.code.id() == id && i.expires > now));
        self.list.len() < before
    }

    /// Codes still usable.
    pub fn active(&self, now: Instant) -> usize {
        self.list.iter().filter(|i| i.expires > now).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_print_and_parse_as_people_type_them() {
        let c = Code::random();
        let shown = c.to_string();
        assert_eq!(shown.len(), 14);
        assert_eq!(Code::parse(&shown).unwrap(), c);
        assert_eq!(
            Code::parse(&shown.to_lowercase().replace('-', " ")).unwrap(),
            c
        );
        assert_eq!(
            Code::parse("o1il-0000-0000").unwrap(),
            Code::parse("0111-0000-0000").unwrap()
        );
        assert!(Code::parse("7KQ2-M9XD").is_err());
        assert!(Code::parse("7KQ2-M9XD-4TPU").is_err());
        assert!(Code::parse("7KQ2-M9XD-4TPA-9").is_err());
        assert!(Code::parse("7KQ2-M9XD-4TPÄ").is_err());
    }

    #[test]
    fn a_code_is_single_use_and_expires() {
        let t0 = Instant::now();
        let mut book = Invitations::default();
        let a = book.issue(Terms::default(), t0, LIFETIME);
        let id = a.code.id().to_string();
        assert_eq!(
            book.lookup(&id, t0),
            Lookup::Found(a.code.clone(), Terms::default())
        );
        assert!(book.consume(&id, t0));
        assert_eq!(book.lookup(&id, t0), Lookup::Unknown);
        assert!(!book.consume(&id, t0));

        let b = book.issue(Terms::default(), t0, LIFETIME);
        let id = b.code.id().to_string();
        let late = t0 + LIFETIME;
        assert_eq!(book.lookup(&id, late), Lookup::Expired);
        assert!(!book.consume(&id, late));
        assert_eq!(book.active(late), 0);
        assert_eq!(book.lookup(&id, late + LIFETIME), Lookup::Unknown);
    }

    #[test]
    fn wrong_answers_burn_a_code() {
        let t0 = Instant::now();
        let mut book = Invitations::default();
        let a = book.issue(Terms::default(), t0, LIFETIME);
        let id = a.code.id().to_string();
        for left in (0..MAX_WRONG).rev() {
            assert!(matches!(book.lookup(&id, t0), Lookup::Found(..)));
            let want = if left == 0 {
                Wrong::Burnt
            } else {
                Wrong::TriesLeft(left)
            };
            assert_eq!(book.wrong(&id), want);
        }
        assert_eq!(book.lookup(&id, t0), Lookup::Unknown);
        assert_eq!(book.wrong(&id), Wrong::Gone);
        assert!(!book.consume(&id, t0));
    }

    #[test]
    fn tries_are_taken_at_lookup_so_concurrent_guesses_count() {
        let t0 = Instant::now();
        let mut book = Invitations::default();
        let a = book.issue(Terms::default(), t0, LIFETIME);
        let id = a.code.id().to_string();
        // Guesses in flight at once, none answered yet: only MAX_WRONG get the code.
        for _ in 0..MAX_WRONG {
            assert!(matches!(book.lookup(&id, t0), Lookup::Found(..)));
        }
        assert_eq!(book.lookup(&id, t0), Lookup::Unknown);
        assert!(!book.consume(&id, t0));

        // The last try may still be the right one.
        let b = book.issue(Terms::default(), t0, LIFETIME);
        let id = b.code.id().to_string();
        for _ in 0..MAX_WRONG {
            assert!(matches!(book.lookup(&id, t0), Lookup::Found(..)));
        }
        assert!(book.consume(&id, t0));
        let c = book.add_tried(b.code.clone(), Terms::default(), t0 + LIFETIME, MAX_WRONG);
        assert_eq!(book.lookup(c.code.id(), t0), Lookup::Unknown);
    }

    #[test]
    fn code_ids_are_checked_before_use() {
        let c = Code::random();
        assert!(Code::valid_id(c.id()));
        for bad in [
            "",
            "7KQ",
            "7KQ2M",
            "7kq2",
            "7KQU",
            "7K\nQ",
            &"A".repeat(70_000),
        ] {
            assert!(!Code::valid_id(bad), "{bad:?}");
        }
    }
}
