//! htpasswd data as an auth Secret carries it, and the `Authorization` header it is checked against.
//!
//! Input: any bytes. As a header value they go to `basic::parse_authorization`; as UTF-8 text they are both
//! an `auth-file` (`Htpasswd::parse_file`) and an `auth-map` (each `user:value` line one entry,
//! `Htpasswd::from_map`). Whatever parses is verified for the first users of the text, with a fixed password
//! and with the line itself as the password.
//!
//! Properties: no panic; a parsed file verifies nobody for a password longer than the limit, and verifies the
//! first `{PLAIN}` entry of each user with exactly its password; the realm of a challenge is always a valid
//! header value.

#![no_main]

use certgate::auth::basic;
use certgate::auth::htpasswd::{Htpasswd, MAX_PASSWORD_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((user, _password)) = basic::parse_authorization(data) {
        assert!(http::HeaderValue::from_str(&basic::challenge(&user)).is_ok());
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Htpasswd::parse_file(text);
    let map = Htpasswd::from_map(text.lines().filter_map(|line| line.split_once(':')));
    // Every error renders (they end up in logs and Events).
    for error in [file.as_ref().err(), map.as_ref().err()]
        .into_iter()
        .flatten()
    {
        let _ = error.to_string();
    }
    if !affordable(text) {
        return;
    }
    if let Ok(htpasswd) = &file {
        // nginx's reading of the file, written out plainly: the first line of a user wins, and the hash
        // field ends at the next ':'.
        let mut seen = std::collections::HashSet::new();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, value)) = line.split_once(':') else {
                continue;
            };
            let hash = value.split(':').next().unwrap_or_default();
            if seen.insert(user)
                && let Some(password) = hash.strip_prefix("{PLAIN}")
            {
                if password.len() <= MAX_PASSWORD_LEN {
                    assert!(
                        htpasswd.verify(user, password),
                        "{{PLAIN}} password refused"
                    );
                }
                assert!(
                    !htpasswd.verify(user, &format!("{password}x")),
                    "wrong password accepted"
                );
            }
        }
    }
    for htpasswd in [file.ok(), map.ok()].into_iter().flatten() {
        for line in text.lines().take(3) {
            let user = line.split_once(':').map_or(line, |(user, _)| user);
            let _ = htpasswd.verify(user, "open sesame");
            let _ = htpasswd.verify(user, line);
            let long = "x".repeat(MAX_PASSWORD_LEN + 1);
            assert!(
                !htpasswd.verify(user, &long),
                "an overlong password verified"
            );
        }
    }
});

/// Whether verifying costs at most a few milliseconds. bcrypt up to cost 17 and SHA-crypt up to a million
/// rounds are accepted by design (the work an operator chose); verifying those would only slow the fuzzer
/// down, so this input is parsed but not verified.
fn affordable(text: &str) -> bool {
    const MAX_BCRYPT_COST: u32 = 6;
    const MAX_ROUNDS: u64 = 20_000;
    let bcrypt = ["$2a$", "$2b$", "$2y$"].iter().all(|prefix| {
        text.match_indices(prefix).all(|(at, _)| {
            let cost = text.get(at + 4..at + 6).and_then(|c| c.parse::<u32>().ok());
            cost.is_none_or(|c| c <= MAX_BCRYPT_COST)
        })
    });
    let rounds = text.match_indices("rounds=").all(|(at, _)| {
        let digits: String = text[at + 7..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.len() > 10 || digits.parse::<u64>().map_or(true, |n| n <= MAX_ROUNDS)
    });
    bcrypt && rounds
}
