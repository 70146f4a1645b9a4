use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn book(per_source: usize, startups: &str, max_sessions: usize) -> Admission {
    Admission::new(Limits {
        startups: Startups::parse(startups).unwrap(),
        per_source,
        max_sessions,
        failures: 10,
        trusted: vec![Net::parse("10.9.0.0/16").unwrap()],
    })
}

#[test]
fn startups_parse_and_drop_linearly_between_start_and_full() {
    let s = Startups::parse("10:30:100").unwrap();
    assert_eq!(s.drop_chance(0), 0.0);
    assert_eq!(s.drop_chance(9), 0.0);
    assert!((s.drop_chance(10) - 0.3).abs() < 1e-9);
    assert!((s.drop_chance(55) - 0.65).abs() < 1e-9);
    assert_eq!(s.drop_chance(100), 1.0);
    assert_eq!(s.drop_chance(1000), 1.0);
    assert_eq!(Startups::parse("5").unwrap().drop_chance(4), 0.0);
    assert_eq!(Startups::parse("5").unwrap().drop_chance(5), 1.0);
    for bad in ["", "a:b:c", "10:30", "20:30:10", "0"] {
        assert!(Startups::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn one_address_cannot_take_more_than_its_share_of_the_not_logged_in() {
    let b = book(3, "100:30:200", 64);
    let now = Instant::now();
    let mut log = Vec::new();
    let held: Vec<Ticket> = (0..3)
        .map(|_| b.admit(ip("127.0.0.1"), now, 0.5, &mut log).unwrap())
        .collect();
    for _ in 0..300 {
        assert_eq!(
            b.admit(ip("127.0.0.1"), now, 0.5, &mut log).err(),
            Some(Refusal::PerSource { open: 3 })
        );
    }
    // Said once, not per refusal; another address is not held back.
    assert_eq!(
        log,
        vec![Change::Capped {
            ip: ip("127.0.0.1"),
            open: 3
        }]
    );
    let other = b.admit(ip("127.0.0.2"), now, 0.5, &mut log).unwrap();
    assert_eq!(b.counts(), (4, 0));
    // An IPv4 address over IPv6 is the same address.
    assert!(b.admit(ip("::ffff:127.0.0.1"), now, 0.5, &mut log).is_err());
    drop(held);
    drop(other);
    assert_eq!(b.counts(), (0, 0));
    // Admitted again at once, but the episode is logged as over only after a quiet minute:
    // connections that come and go do not make a line each.
    log.clear();
    let again = b.admit(ip("127.0.0.1"), now, 0.5, &mut log).unwrap();
    assert!(log.is_empty(), "{log:?}");
    drop(again);
    let _t = b
        .admit(ip("127.0.0.1"), now + EPISODE_QUIET, 0.5, &mut log)
        .unwrap();
    assert_eq!(
        log,
        vec![Change::Uncapped {
            ip: ip("127.0.0.1")
        }]
    );
    // Trusted addresses are not held to the cap.
    let trusted: Vec<Ticket> = (0..10)
        .map(|_| b.admit(ip("10.9.1.2"), now, 0.5, &mut log).unwrap())
        .collect();
    assert_eq!(trusted.len(), 10);
}

#[test]
fn past_start_connections_are_dropped_at_random_and_all_past_full() {
    let b = book(100, "2:50:4", 64);
    let now = Instant::now();
    let mut log = Vec::new();
    let _a = b.admit(ip("10.0.0.1"), now, 0.0, &mut log).unwrap();
    let _b = b.admit(ip("10.0.0.2"), now, 0.0, &mut log).unwrap();
    // Two open (= start): dropped with a chance of 50 %.
    assert_eq!(
        b.admit(ip("10.0.0.3"), now, 0.49, &mut log).err(),
        Some(Refusal::Startups { open: 2 })
    );
    let _c = b.admit(ip("10.0.0.3"), now, 0.51, &mut log).unwrap();
    // Three open: 75 %.
    assert!(b.admit(ip("10.0.0.4"), now, 0.74, &mut log).is_err());
    let _d = b.admit(ip("10.0.0.4"), now, 0.76, &mut log).unwrap();
    // Four (= full): always.
    assert!(b.admit(ip("10.0.0.5"), now, 0.999, &mut log).is_err());
    // Said once when it began, and once when it ended (a quiet minute later).
    assert_eq!(log, vec![Change::Dropping { open: 2 }]);
    drop((_a, _b, _c, _d));
    log.clear();
    let e = b.admit(ip("10.0.0.6"), now, 0.0, &mut log).unwrap();
    assert!(log.is_empty(), "{log:?}");
    drop(e);
    let _f = b
        .admit(ip("10.0.0.6"), now + EPISODE_QUIET, 0.0, &mut log)
        .unwrap();
    assert_eq!(log, vec![Change::NotDropping]);
}

#[test]
fn one_flooding_address_does_not_get_the_others_dropped() {
    let b = book(32, "10:30:100", 64);
    let now = Instant::now();
    let mut log = Vec::new();
    // The worst draw (0.0) is dropped whenever the chance is above nothing.
    let flood: Vec<Ticket> = (0..32)
        .map(|_| b.admit(ip("127.0.0.1"), now, 0.0, &mut log).unwrap())
        .collect();
    assert!(b.admit(ip("127.0.0.1"), now, 0.99, &mut log).is_err());
    let others: Vec<Ticket> = (2..8)
        .map(|i| {
            b.admit(ip(&format!("127.0.0.{i}")), now, 0.0, &mut log)
                .unwrap()
        })
        .collect();
    assert_eq!(b.counts(), (38, 0));
    // Many addresses at once (a load of ten) is when the random drop begins.
    assert_eq!(
        b.admit(ip("127.0.0.9"), now, 0.0, &mut log).err(),
        Some(Refusal::Startups { open: 38 })
    );
    drop((flood, others));
    assert_eq!(b.counts(), (0, 0));
}

#[test]
fn sessions_have_their_own_slots() {
    let b = book(100, "3", 2);
    let now = Instant::now();
    let mut log = Vec::new();
    let mut first = b.admit(ip("10.0.0.1"), now, 0.5, &mut log).unwrap();
    first.promote().unwrap();
    let mut second = b.admit(ip("10.0.0.1"), now, 0.5, &mut log).unwrap();
    second.promote().unwrap();
    assert_eq!(b.counts(), (0, 2));
    // Sessions do not use up the not-logged-in slots: three more may still try to log in.
    let mut waiting: Vec<Ticket> = (0..3)
        .map(|i| {
            b.admit(ip(&format!("10.0.1.{i}")), now, 0.5, &mut log)
                .unwrap()
        })
        .collect();
    assert!(b.admit(ip("10.0.2.1"), now, 0.0, &mut log).is_err());
    // No session slot left for a third login.
    assert_eq!(waiting[0].promote(), Err(Refusal::Full { max: 2 }));
    drop(first);
    waiting[0].promote().unwrap();
    assert_eq!(b.counts(), (2, 2));
    drop(waiting);
    drop(second);
    assert_eq!(b.counts(), (0, 0));
}

#[test]
fn an_address_that_keeps_failing_is_refused_for_a_doubling_while() {
    let b = book(10, "10:30:100", 64);
    let t0 = Instant::now();
    let bad = ip("192.0.2.7");
    let mut log = Vec::new();
    for i in 0..9 {
        b.failed_login(bad, t0 + Duration::from_secs(i), &mut log);
    }
    assert!(log.is_empty());
    assert!(
        b.admit(bad, t0 + Duration::from_secs(9), 0.5, &mut log)
            .is_ok()
    );
    b.failed_login(bad, t0 + Duration::from_secs(9), &mut log);
    assert_eq!(
        log,
        vec![Change::Penalised {
            ip: bad,
            secs: 30,
            failures: 10
        }]
    );
    let t1 = t0 + Duration::from_secs(9);
    assert_eq!(
        b.admit(bad, t1 + Duration::from_secs(10), 0.5, &mut log)
            .err(),
        Some(Refusal::Penalised { for_secs: 20 })
    );
    // Others are not held back.
    assert!(b.admit(ip("192.0.2.8"), t1, 0.5, &mut log).is_ok());
    log.clear();
    let back = t1 + Duration::from_secs(31);
    assert!(b.admit(bad, back, 0.5, &mut log).is_ok());
    assert_eq!(log, vec![Change::Forgiven { ip: bad }]);
    // Again: twice as long; and again: twice that.
    for (round, want) in [(1u64, 60u64), (2, 120)] {
        log.clear();
        let at = back + Duration::from_secs(round * 1000);
        for i in 0..10 {
            b.failed_login(bad, at + Duration::from_millis(i), &mut log);
        }
        assert_eq!(
            log,
            vec![Change::Penalised {
                ip: bad,
                secs: want,
                failures: 10
            }],
            "round {round}"
        );
    }
    // Clean for long enough: a first offence again.
    log.clear();
    let later = back + Duration::from_secs(2000 + 120 + 3601);
    for i in 0..10 {
        b.failed_login(bad, later + Duration::from_millis(i), &mut log);
    }
    assert_eq!(
        log,
        vec![Change::Penalised {
            ip: bad,
            secs: 30,
            failures: 10
        }]
    );
    // Failures spread out wider than the window never add up.
    let slow = ip("192.0.2.9");
    log.clear();
    for i in 0..50 {
        b.failed_login(slow, t0 + FAILURE_WINDOW * i, &mut log);
    }
    assert!(log.is_empty());
}

#[test]
fn trusted_addresses_are_never_penalised_and_the_book_stays_bounded() {
    let b = book(10, "10:30:100", 64);
    let now = Instant::now();
    let mut log = Vec::new();
    for _ in 0..100 {
        b.failed_login(ip("10.9.3.4"), now, &mut log);
    }
    assert!(log.is_empty());
    assert!(b.admit(ip("10.9.3.4"), now, 0.5, &mut log).is_ok());
    for i in 0..(MAX_REMEMBERED as u32 * 2) {
        let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i));
        b.failed_login(a, now + Duration::from_millis(u64::from(i)), &mut log);
    }
    assert!(b.state().sources.len() <= MAX_REMEMBERED);
}

#[test]
fn networks_match_their_prefix() {
    let n = Net::parse("192.168.1.0/24").unwrap();
    assert!(n.contains(ip("192.168.1.77")) && !n.contains(ip("192.168.2.1")));
    assert!(n.contains(ip("::ffff:192.168.1.5")));
    let one = Net::parse("10.0.0.1").unwrap();
    assert!(one.contains(ip("10.0.0.1")) && !one.contains(ip("10.0.0.2")));
    let v6 = Net::parse("fd00::/8").unwrap();
    assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
    assert!(
        Net::parse("10.0.0.0/12")
            .unwrap()
            .contains(ip("10.15.255.255"))
    );
    assert!(!Net::parse("10.0.0.0/12").unwrap().contains(ip("10.16.0.0")));
    for bad in ["", "10.0.0.0/33", "nope", "::/129"] {
        assert!(Net::parse(bad).is_err(), "{bad}");
    }
}
