//! htpasswd data as ingress-nginx feeds it to nginx's `auth_basic_user_file`, parsed once and verified per
//! request. Pure: owns parsing and verification; must not do I/O or log, and never puts a password or a hash
//! into an error, a `Debug` output or a log line.
//!
//! Accepted hash formats — what nginx's `ngx_crypt` verifies (its own code for apr1, `{PLAIN}`, `{SSHA}` and
//! `{SHA}`, the C library's `crypt()` for the rest), as the real tools write them:
//!
//! | format                         | written by                                  | verified with           |
//! |--------------------------------|---------------------------------------------|-------------------------|
//! | `$apr1$salt$digest`            | `htpasswd` (default), `-m`; `openssl passwd -apr1` | MD5 crypt on `md-5` |
//! | `$1$salt$digest`               | `openssl passwd -1`                         | MD5 crypt on `md-5`     |
//! | `$2a$` / `$2b$` / `$2y$`       | `htpasswd -B`                               | `bcrypt`                |
//! | `$5$[rounds=N$]salt$digest`    | `htpasswd -2`, `openssl passwd -5`          | `sha-crypt`             |
//! | `$6$[rounds=N$]salt$digest`    | `htpasswd -5`, `openssl passwd -6`          | `sha-crypt`             |
//! | `{SHA}base64(sha1(pw))`        | `htpasswd -s`                               | `sha1`                  |
//! | `{SSHA}base64(sha1(pw+salt)+salt)` | `slappasswd`                            | `sha1`                  |
//! | `{PLAIN}password`              | by hand (nginx's RFC 2307 scheme)           | SHA-256 of both sides   |
//!
//! Not accepted, each with an error naming the line:
//! - An unprefixed value that is not one of the `$…$` forms. nginx hands such a value to the C library's
//!   `crypt()`, so `htpasswd -p`'s unprefixed plain text never verifies there (Apache reads it as plain text
//!   only on Windows and NetWare): the error points to `{PLAIN}`. Legacy 13-character DES crypt
//!   (`htpasswd -d`, truncates passwords to 8 bytes) is reported as unsupported rather than silently accepted.
//! - `$2x$` (crypt_blowfish's sign-extension-bug mode) and other crypt schemes (`$y$` yescrypt, …).
//! - Costs that would make every request burn seconds of CPU: bcrypt cost above 17 (`htpasswd -C`'s maximum)
//!   and SHA-crypt above [`MAX_SHA_CRYPT_ROUNDS`] rounds. The caller turns the error into 503, not open access.
//!
//! File syntax follows nginx: one `user:hash` per line; a line starting with `#` and a blank line are skipped;
//! CRLF is accepted; the hash ends at the next `:` (Apache and nginx both ignore trailing fields); when a user
//! appears twice the first line wins, as nginx scans top-down.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use md5::Md5;
use sha_crypt::{PasswordVerifier as _, ShaCrypt};
use sha1::{Digest as _, Sha1};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// Passwords longer than this never verify. SHA-crypt and MD5 crypt hash the password once per round, so an
/// unbounded password would let any client make one request cost seconds of CPU.
pub const MAX_PASSWORD_LEN: usize = 1024;
/// htpasswd's own maximum for `-C`; cost 17 is already several seconds per verification.
pub const MAX_BCRYPT_COST: u32 = 17;
/// 200 times SHA-crypt's default of 5000; beyond this a single request costs seconds of CPU.
pub const MAX_SHA_CRYPT_ROUNDS: u32 = 1_000_000;

/// The alphabet of crypt(3)'s base64 (MD5 crypt, SHA-crypt, DES crypt).
const CRYPT_ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `{SHA}`/`{SSHA}` payloads: standard base64, padding optional as in nginx's decoder.
const RFC2307_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// bcrypt's base64. The salt is 22 characters for 16 bytes, and crypt_blowfish ignores the 4 spare bits of the
/// last one, so spare bits are allowed (a non-canonical digest then simply fails the comparison).
const BCRYPT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::BCRYPT,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Users and their parsed hashes, from an `auth-file` or an `auth-map` Secret.
#[derive(Clone)]
pub struct Htpasswd {
    users: HashMap<String, Hash>,
    /// SECURITY: a copy of the first entry's hash, verified (and the result discarded) for unknown users so an
    /// unknown user costs the same work as a known one. A single fixed hash would not do that: bcrypt at cost
    /// 10 takes hundreds of times longer than apr1, so a fixed dummy of another kind would reveal which users
    /// exist. In a file mixing schemes, users of other schemes than the first still differ in timing.
    dummy: Option<Hash>,
}

impl fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SECURITY: no hashes, and no user names either (they would end up in logs).
        f.debug_struct("Htpasswd")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

/// Why htpasswd data was rejected. Names where (line or auth-map key) and what is wrong, never the hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HtpasswdError {
    /// A line of an `auth-file` (1-based).
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: Problem },
    /// An entry of an `auth-map`, named by its key (the user name).
    #[error("auth-map key {user:?}: {problem}")]
    MapEntry { user: String, problem: Problem },
}

/// What is wrong with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("no ':' between the user name and the password hash")]
    MissingColon,
    #[error("empty user name")]
    EmptyUser,
    #[error("user name contains ':' or a line break")]
    InvalidUser,
    #[error("empty password hash")]
    EmptyHash,
    #[error("the value has more than one line")]
    MultiLine,
    #[error("malformed {scheme} hash: {reason}")]
    Malformed {
        scheme: &'static str,
        reason: &'static str,
    },
    #[error("unsupported hash format: {0}")]
    Unsupported(&'static str),
}

impl Htpasswd {
    /// Parse an htpasswd file (auth-file). Blank lines and lines starting with '#' are skipped; CRLF accepted.
    /// A malformed line or an unsupported hash format is an error naming the line (the caller then serves 503
    /// for those paths — never open access), not silently skipped.
    pub fn parse_file(text: &str) -> Result<Self, HtpasswdError> {
        let mut builder = Builder::default();
        for (index, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |problem| HtpasswdError::Line {
                line: index + 1,
                problem,
            };
            let (user, value) = line.split_once(':').ok_or(error(Problem::MissingColon))?;
            if user.is_empty() {
                return Err(error(Problem::EmptyUser));
            }
            let hash = parse_hash(hash_field(value)).map_err(error)?;
            builder.insert(user, hash);
        }
        Ok(builder.finish())
    }

    /// auth-map form: user name -> hash.
    ///
    /// ingress-nginx writes each entry as a `user:hash` line, so a value is read like a file line's hash (up
    /// to the first ':'); one trailing line break (left by `kubectl create secret --from-file`) is dropped, but
    /// a value with further lines is an error rather than a way to add users.
    pub fn from_map<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, HtpasswdError> {
        let mut builder = Builder::default();
        for (user, value) in entries {
            let error = |problem| HtpasswdError::MapEntry {
                user: user.to_owned(),
                problem,
            };
            if user.is_empty() {
                return Err(error(Problem::EmptyUser));
            }
            if user.contains([':', '\r', '\n']) {
                return Err(error(Problem::InvalidUser));
            }
            let value = value
                .strip_suffix('\n')
                .map(|v| v.strip_suffix('\r').unwrap_or(v))
                .unwrap_or(value);
            if value.contains(['\r', '\n']) {
                return Err(error(Problem::MultiLine));
            }
            let hash = parse_hash(hash_field(value)).map_err(error)?;
            builder.insert(user, hash);
        }
        Ok(builder.finish())
    }

    /// Constant-time with respect to the password, and an unknown user costs the same work as a known one
    /// (verify against a fixed dummy hash) so timing does not reveal which users exist.
    ///
    /// The dummy mirrors the first entry's scheme, cost and salt (see [`Htpasswd`]'s `dummy`); a password
    /// longer than [`MAX_PASSWORD_LEN`] is refused before any lookup, for every user alike.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        if password.len() > MAX_PASSWORD_LEN {
            return false;
        }
        match self.users.get(user) {
            Some(hash) => hash.verify(password.as_bytes()),
            None => {
                if let Some(dummy) = &self.dummy {
                    // black_box: the work must happen even though its result is thrown away.
                    std::hint::black_box(dummy.verify(std::hint::black_box(password.as_bytes())));
                }
                false
            }
        }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[derive(Default)]
struct Builder {
    users: HashMap<String, Hash>,
    dummy: Option<Hash>,
}

impl Builder {
    fn insert(&mut self, user: &str, hash: Hash) {
        if self.dummy.is_none() {
            self.dummy = Some(hash.clone());
        }
        // First entry wins, like nginx's top-down scan of the file.
        if let Entry::Vacant(slot) = self.users.entry(user.to_owned()) {
            slot.insert(hash);
        }
    }

    fn finish(self) -> Htpasswd {
        Htpasswd {
            users: self.users,
            dummy: self.dummy,
        }
    }
}

/// The hash field of a `user:hash[:extra…]` entry: nginx and Apache both stop at the next ':'.
fn hash_field(value: &str) -> &str {
    value.split_once(':').map_or(value, |(hash, _)| hash)
}

/// A parsed, validated hash. Deliberately not `Debug`.
#[derive(Clone)]
enum Hash {
    /// MD5 crypt: `$1$` (FreeBSD/glibc) or `$apr1$` (Apache); the algorithms differ only in the magic string.
    Md5Crypt {
        magic: &'static str,
        salt: String,
        digest: [u8; 22],
    },
    /// bcrypt; `digest` is the 31 base64 characters after the salt.
    Bcrypt {
        cost: u32,
        salt: [u8; 16],
        digest: [u8; 31],
    },
    /// `$5$`/`$6$` in full, validated here and verified by `sha-crypt`.
    ShaCrypt {
        mcf: String,
    },
    Sha1 {
        digest: [u8; 20],
    },
    Ssha {
        digest: [u8; 20],
        salt: Vec<u8>,
    },
    /// `{PLAIN}`: only the SHA-256 of the password is kept, so equality is checked on equal-length digests
    /// and the timing does not depend on where (or whether) the lengths differ.
    Plain {
        sha256: [u8; 32],
    },
}

impl Hash {
    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Hash::Md5Crypt {
                magic,
                salt,
                digest,
            } => md5_crypt_digest(password, magic.as_bytes(), salt.as_bytes())
                .ct_eq(digest)
                .into(),
            Hash::Bcrypt { cost, salt, digest } => {
                // The crate truncates at 72 bytes and NUL-terminates, as crypt_blowfish (htpasswd -B) does.
                match bcrypt::hash_with_salt(password, *cost, *salt) {
                    Ok(parts) => {
                        let computed = parts.format_for_version(bcrypt::Version::TwoB);
                        computed
                            .as_bytes()
                            .get(29..)
                            .is_some_and(|c| c.ct_eq(digest).into())
                    }
                    Err(_) => false,
                }
            }
            // The crate compares with its own constant-time equality (ctutils::CtEq) on the decoded digest.
            Hash::ShaCrypt { mcf } => ShaCrypt::default()
                .verify_password(password, mcf.as_str())
                .is_ok(),
            Hash::Sha1 { digest } => {
                let computed: [u8; 20] = Sha1::digest(password).into();
                computed.ct_eq(digest).into()
            }
            Hash::Ssha { digest, salt } => {
                let mut hasher = Sha1::new();
                hasher.update(password);
                hasher.update(salt);
                let computed: [u8; 20] = hasher.finalize().into();
                computed.ct_eq(digest).into()
            }
            Hash::Plain { sha256 } => {
                let computed: [u8; 32] = Sha256::digest(password).into();
                computed.ct_eq(sha256).into()
            }
        }
    }
}

const fn malformed(scheme: &'static str, reason: &'static str) -> Problem {
    Problem::Malformed { scheme, reason }
}

fn parse_hash(value: &str) -> Result<Hash, Problem> {
    if value.is_empty() {
        return Err(Problem::EmptyHash);
    }
    if let Some(rest) = value.strip_prefix("$apr1$") {
        return parse_md5_crypt("$apr1$", "apr1", rest);
    }
    if let Some(rest) = value.strip_prefix("$1$") {
        return parse_md5_crypt("$1$", "MD5-crypt", rest);
    }
    for variant in ["$2a$", "$2b$", "$2y$"] {
        if value.starts_with(variant) {
            return parse_bcrypt(value);
        }
    }
    if value.starts_with("$2x$") {
        return Err(Problem::Unsupported(
            "bcrypt $2x$ (crypt_blowfish's bug-compatible mode); rehash with htpasswd -B",
        ));
    }
    if let Some(rest) = value.strip_prefix("$5$") {
        return parse_sha_crypt(value, rest, "SHA-256-crypt", 43);
    }
    if let Some(rest) = value.strip_prefix("$6$") {
        return parse_sha_crypt(value, rest, "SHA-512-crypt", 86);
    }
    if let Some(rest) = value.strip_prefix("{SHA}") {
        let bytes = RFC2307_BASE64
            .decode(rest)
            .map_err(|_| malformed("{SHA}", "not base64"))?;
        let digest = <[u8; 20]>::try_from(bytes.as_slice())
            .map_err(|_| malformed("{SHA}", "not a 20-byte SHA-1 digest"))?;
        return Ok(Hash::Sha1 { digest });
    }
    if let Some(rest) = value.strip_prefix("{SSHA}") {
        let bytes = RFC2307_BASE64
            .decode(rest)
            .map_err(|_| malformed("{SSHA}", "not base64"))?;
        let (digest, salt) = bytes
            .split_first_chunk::<20>()
            .ok_or(malformed("{SSHA}", "shorter than a SHA-1 digest"))?;
        return Ok(Hash::Ssha {
            digest: *digest,
            salt: salt.to_vec(),
        });
    }
    if let Some(rest) = value.strip_prefix("{PLAIN}") {
        return Ok(Hash::Plain {
            sha256: Sha256::digest(rest.as_bytes()).into(),
        });
    }
    if value.starts_with('$') {
        return Err(Problem::Unsupported(
            "crypt scheme other than $apr1$, $1$, $2a$/$2b$/$2y$, $5$ and $6$",
        ));
    }
    if value.starts_with('{') && value.contains('}') {
        return Err(Problem::Unsupported(
            "scheme other than {SHA}, {SSHA} and {PLAIN}",
        ));
    }
    if value.len() == 13 && value.bytes().all(is_crypt_char) {
        return Err(Problem::Unsupported(
            "legacy DES crypt (htpasswd -d) only uses the first 8 bytes of a password; rehash with htpasswd -B or -m",
        ));
    }
    Err(Problem::Unsupported(
        "no recognised prefix; nginx passes such a value to crypt(3), so plain text written by htpasswd -p never \
         matches there: write plain text as {PLAIN}password, or better rehash with htpasswd -B",
    ))
}

fn is_crypt_char(b: u8) -> bool {
    CRYPT_ALPHABET.contains(&b)
}

/// `rest` is what follows the magic: `salt$digest`.
fn parse_md5_crypt(magic: &'static str, scheme: &'static str, rest: &str) -> Result<Hash, Problem> {
    let (salt, digest) = rest
        .split_once('$')
        .ok_or(malformed(scheme, "no '$' after the salt"))?;
    // Longer salts are cut to 8 by both Apache and glibc, so the stored string could never match theirs.
    if salt.len() > 8 {
        return Err(malformed(scheme, "salt longer than 8 characters"));
    }
    // crypt(3) (libxcrypt) refuses other salt characters for `$1$`; nginx's own apr1 code takes any.
    if magic == "$1$" && !salt.bytes().all(is_crypt_char) {
        return Err(malformed(
            scheme,
            "salt has characters outside crypt's base64",
        ));
    }
    let digest = <[u8; 22]>::try_from(digest.as_bytes())
        .map_err(|_| malformed(scheme, "digest is not 22 characters"))?;
    if !digest.iter().copied().all(is_crypt_char) {
        return Err(malformed(
            scheme,
            "digest has characters outside crypt's base64",
        ));
    }
    Ok(Hash::Md5Crypt {
        magic,
        salt: salt.to_owned(),
        digest,
    })
}

/// `$2y$NN$` + 22 characters of salt + 31 of digest, 60 in all.
fn parse_bcrypt(value: &str) -> Result<Hash, Problem> {
    const SCHEME: &str = "bcrypt";
    let bytes = value.as_bytes();
    if bytes.len() != 60 {
        return Err(malformed(SCHEME, "not 60 characters"));
    }
    let cost = match (bytes.get(4), bytes.get(5), bytes.get(6)) {
        (Some(tens @ b'0'..=b'9'), Some(ones @ b'0'..=b'9'), Some(b'$')) => {
            u32::from(tens - b'0') * 10 + u32::from(ones - b'0')
        }
        _ => return Err(malformed(SCHEME, "cost is not two digits")),
    };
    if !(4..=31).contains(&cost) {
        return Err(malformed(SCHEME, "cost outside 4..=31"));
    }
    if cost > MAX_BCRYPT_COST {
        return Err(Problem::Unsupported(
            "bcrypt cost above 17 (htpasswd -C's maximum): every request would cost seconds of CPU",
        ));
    }
    let (salt, digest) = bytes
        .get(7..29)
        .zip(bytes.get(29..60))
        .ok_or(malformed(SCHEME, "not 60 characters"))?;
    let mut salt_bytes = [0u8; 16];
    match BCRYPT_BASE64.decode_slice(salt, &mut salt_bytes) {
        Ok(16) => {}
        _ => return Err(malformed(SCHEME, "salt is not bcrypt base64")),
    }
    let mut digest_bytes = [0u8; 23];
    match BCRYPT_BASE64.decode_slice(digest, &mut digest_bytes) {
        Ok(23) => {}
        _ => return Err(malformed(SCHEME, "digest is not bcrypt base64")),
    }
    let digest =
        <[u8; 31]>::try_from(digest).map_err(|_| malformed(SCHEME, "not 60 characters"))?;
    Ok(Hash::Bcrypt {
        cost,
        salt: salt_bytes,
        digest,
    })
}

/// `rest` is what follows `$5$`/`$6$`: `[rounds=N$]salt$digest`.
fn parse_sha_crypt(
    value: &str,
    rest: &str,
    scheme: &'static str,
    digest_len: usize,
) -> Result<Hash, Problem> {
    let mut fields = rest.split('$');
    let mut field = fields.next().unwrap_or_default();
    if let Some(rounds) = field.strip_prefix("rounds=") {
        // libxcrypt refuses leading zeros too, so such a value never verifies under nginx.
        if rounds.is_empty()
            || rounds.starts_with('0')
            || !rounds.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(malformed(scheme, "rounds is not a number"));
        }
        // glibc clamps rounds outside 1000..=999999999 and writes the clamped value, so a stored value
        // outside that range could never have matched.
        match rounds.parse::<u32>() {
            Ok(n) if (1000..=999_999_999).contains(&n) => {
                if n > MAX_SHA_CRYPT_ROUNDS {
                    return Err(Problem::Unsupported(
                        "SHA-crypt rounds above 1000000: every request would cost seconds of CPU",
                    ));
                }
            }
            _ => return Err(malformed(scheme, "rounds outside 1000..=999999999")),
        }
        field = fields.next().unwrap_or_default();
    }
    let salt = field;
    if salt.is_empty() || salt.len() > 16 {
        return Err(malformed(scheme, "salt is not 1 to 16 characters"));
    }
    // libxcrypt (Debian's crypt(3)) refuses other salt characters, and so does sha-crypt's parser.
    if !salt.bytes().all(is_crypt_char) {
        return Err(malformed(
            scheme,
            "salt has characters outside crypt's base64",
        ));
    }
    let digest = fields
        .next()
        .ok_or(malformed(scheme, "no '$' after the salt"))?;
    if fields.next().is_some() {
        return Err(malformed(scheme, "too many '$'-separated fields"));
    }
    if digest.len() != digest_len || !digest.bytes().all(is_crypt_char) {
        return Err(malformed(
            scheme,
            "digest is not the expected number of crypt base64 characters",
        ));
    }
    Ok(Hash::ShaCrypt {
        mcf: value.to_owned(),
    })
}

/// MD5 crypt (Poul-Henning Kamp's algorithm; Apache's apr1 is the same with the magic `$apr1$`), returning
/// the 22-character encoded digest.
///
/// Written here on top of the maintained `md-5` crate because no maintained crate verifies apr1: `pwhash`
/// (last release 1.0.0, on md-5 0.9) only knows `$1$`, and `htpasswd-verify` carries its own MD5, compares
/// with `==` and depends on the unmaintained `rust-crypto`. The MD5 itself is not hand-written.
fn md5_crypt_digest(password: &[u8], magic: &[u8], salt: &[u8]) -> [u8; 22] {
    let mut alternate = Md5::new();
    alternate.update(password);
    alternate.update(salt);
    alternate.update(password);
    let alternate: [u8; 16] = alternate.finalize().into();

    let mut context = Md5::new();
    context.update(password);
    context.update(magic);
    context.update(salt);
    let mut remaining = password.len();
    while remaining > 0 {
        let n = remaining.min(alternate.len());
        context.update(&alternate[..n]);
        remaining -= n;
    }
    // One byte per bit of the password's length: NUL for a set bit, the password's first byte for a clear one
    // (the loop does not run for an empty password).
    let first = password.first().copied().unwrap_or_default();
    let mut bits = password.len();
    while bits > 0 {
        context.update([if bits & 1 == 1 { 0 } else { first }]);
        bits >>= 1;
    }
    let mut digest: [u8; 16] = context.finalize().into();

    for round in 0..1000 {
        let mut context = Md5::new();
        if round % 2 == 1 {
            context.update(password);
        } else {
            context.update(digest);
        }
        if round % 3 != 0 {
            context.update(salt);
        }
        if round % 7 != 0 {
            context.update(password);
        }
        if round % 2 == 1 {
            context.update(digest);
        } else {
            context.update(password);
        }
        digest = context.finalize().into();
    }

    let mut out = [0u8; 22];
    let groups = [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)];
    for (i, (a, b, c)) in groups.into_iter().enumerate() {
        let word = u32::from(digest[a]) << 16 | u32::from(digest[b]) << 8 | u32::from(digest[c]);
        encode_crypt64(word, &mut out[i * 4..i * 4 + 4]);
    }
    encode_crypt64(u32::from(digest[11]), &mut out[20..22]);
    out
}

/// crypt(3)'s base64: six bits at a time, least significant first.
fn encode_crypt64(mut word: u32, out: &mut [u8]) {
    for slot in out {
        *slot = CRYPT_ALPHABET[(word & 0x3f) as usize];
        word >>= 6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixtures made once with the real tools (Debian apache2-utils 2.4.71, OpenSSL 3.0, glibc crypt via perl,
    // python3 hashlib) and committed as literals so the tests need none of them. The password is always
    // "open sesame" unless the fixture says otherwise.

    /// `htpasswd -nb alice 'open sesame'` (htpasswd's default: apr1)
    const APR1_DEFAULT: &str = "alice:$apr1$fIHDPoWx$GS6i25HP0ZSmReiNjl.zy1";
    /// `htpasswd -nbm alice 'open sesame'`
    const APR1_M: &str = "alice:$apr1$/KSE4wcG$M/afHIF76/K3VfCB7YpKQ/";
    /// `openssl passwd -apr1 'open sesame'`
    const APR1_OPENSSL: &str = "alice:$apr1$GTK/KA2j$GUPACb8wo1eiqC2/A9cHg/";
    /// `htpasswd -nbm bob 'pa:ss wörd'`
    const APR1_BOB: &str = "bob:$apr1$81rbD2pe$H731k6HnqI3fsSOrXyc00.";
    /// `htpasswd -nbm carol ''`
    const APR1_EMPTY_PASSWORD: &str = "carol:$apr1$EEIjgszh$89uh02UqqnsahVcNcE8Zb/";
    /// `openssl passwd -1 'open sesame'` (same output from perl's glibc crypt with that salt)
    const MD5_CRYPT: &str = "alice:$1$kMCWZERv$.TOF0vLQM9jqCtiYbr/W2/";
    /// `openssl passwd -1 -salt abcdefgh x`
    const MD5_CRYPT_X: &str = "xavier:$1$abcdefgh$znAnv9M.XU2pRYfmSs46h/";
    /// `htpasswd -nbB -C 4 alice 'open sesame'`
    const BCRYPT_2Y: &str = "alice:$2y$04$qP9u7X8wiliDVKBwqAC1GO4Nac63LlUl82iBDeOAKN4xRWU2APRZa";
    /// `perl -e 'print crypt("open sesame", "$2b$04$qP9u7X8wiliDVKBwqAC1GO")'` (glibc/libxcrypt)
    const BCRYPT_2B: &str = "alice:$2b$04$qP9u7X8wiliDVKBwqAC1GO4Nac63LlUl82iBDeOAKN4xRWU2APRZa";
    /// `perl -e 'print crypt("open sesame", "$2a$04$qP9u7X8wiliDVKBwqAC1GO")'` (glibc/libxcrypt)
    const BCRYPT_2A: &str = "alice:$2a$04$qP9u7X8wiliDVKBwqAC1GO4Nac63LlUl82iBDeOAKN4xRWU2APRZa";
    /// `htpasswd -nbB -C 4 bob 'pa:ss wörd'`
    const BCRYPT_BOB: &str = "bob:$2y$04$vUs/XdfqQMGGNnMPvFfhKOG9mguLDXk2fxVAZiv8zxspTxw2mW.zW";
    /// `htpasswd -nbB -C 4 dave "$(python3 -c 'print("y"*80)')"`
    const BCRYPT_LONG: &str = "dave:$2y$04$Dpi5w5k77okEn7xekXeEkODaiNay8Rul5f4Vluh0l8ey2GKnNhTV2";
    /// `htpasswd -nb2 alice 'open sesame'`
    const SHA256_CRYPT: &str =
        "alice:$5$1lbgspyKpuO584HW$yrqseGZ.Uv5uChrT1i5cMz09RsPIbuVFvgJ7aT18QS9";
    /// `openssl passwd -5 'open sesame'`
    const SHA256_CRYPT_OPENSSL: &str =
        "alice:$5$4UiC95/wV9pf6NaD$ve1c0U2SQk9HLNxR7yzf4uRMWcdjOzUzOxZxwl71v9.";
    /// `htpasswd -nb2 -r 1000 bob 'pa:ss wörd'`
    const SHA256_CRYPT_ROUNDS: &str =
        "bob:$5$rounds=1000$72zGXipJI7Srhkr0$9K4VOzzHTXKEn3xHoQHYPJfzQopb1zPhLrdf.fI2PvB";
    /// `htpasswd -nb5 alice 'open sesame'`
    const SHA512_CRYPT: &str = "alice:$6$z2MINCCgY7SI/XM4$9Ym36SQero2w/bRdFLWV3N8QXOEeAEJb7sIhDfJ.OH0/jr0dHwOobt/dyXewZtFU.Aall24M6SItmL7DQlLkA1";
    /// `htpasswd -nb5 -r 10000 alice 'open sesame'`
    const SHA512_CRYPT_ROUNDS: &str = "alice:$6$rounds=10000$OSo8SylZkJaPPyJU$mSs0hx6Fa6f56QN7e91YKVtkpsgcgfF90xy9KeY.d7WUnwTWWnHyY5fmR.a0b5jQJuXqKlUhEhBVLm8NlLP7E/";
    /// `openssl passwd -6 -salt 'rounds=6000$abcdefgh' 'open sesame'` (perl's glibc crypt agrees)
    const SHA512_CRYPT_OPENSSL_ROUNDS: &str = "alice:$6$rounds=6000$abcdefgh$qPA1zB58rnZ2Ez71qSw19TBiFJ0yurj/oAZRo0xVLMRwlQq7E7qm9voNbwybq5IlkHA0gPmiq/H6l2D1/NfGH.";
    /// `htpasswd -nbs alice 'open sesame'`
    const SHA1: &str = "alice:{SHA}W8r/fyL/UzygmbNAjq2HbA67qac=";
    /// `htpasswd -nbs bob 'pa:ss wörd'`
    const SHA1_BOB: &str = "bob:{SHA}cRQ3iPZN/cUFUyAxdC91S5hcXvA=";
    /// python3: `"{SSHA}" + b64encode(sha1(b"open sesame" + salt).digest() + salt)` with
    /// `salt = bytes([0x8f, 0x1e, 0x2a, 0x00, 0x73, 0x61, 0x6c, 0x74])`
    const SSHA: &str = "alice:{SSHA}gtDIVGSsOSXsMp6QxwDZ71Sg7p6PHioAc2FsdA==";
    /// python3: same with password "pa:ss wörd" (UTF-8) and `salt = b"NaCl"`
    const SSHA_BOB: &str = "bob:{SSHA}bGbSToiAYzQVuHYIUs81V9IUottOYUNs";
    /// nginx's `{PLAIN}` scheme, by hand
    const PLAIN: &str = "alice:{PLAIN}open sesame";
    /// `htpasswd -nbp alice 'open sesame'` (warns: "storing passwords as plain text might just not work")
    const HTPASSWD_P: &str = "alice:open sesame";
    /// `htpasswd -nbd alice 'open sesame'` (warns: "Password truncated to 8 characters")
    const DES_CRYPT: &str = "alice:bpkLy.Ro2MWZw";

    const PASSWORD: &str = "open sesame";
    const BOB_PASSWORD: &str = "pa:ss wörd";

    fn file(lines: &[&str]) -> Htpasswd {
        match Htpasswd::parse_file(&lines.join("\n")) {
            Ok(htpasswd) => htpasswd,
            Err(error) => panic!("fixture rejected: {error}"),
        }
    }

    fn line_error(text: &str) -> (usize, Problem) {
        match Htpasswd::parse_file(text) {
            Err(HtpasswdError::Line { line, problem }) => (line, problem),
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("accepted {text:?}"),
        }
    }

    /// Right password true, wrong password false, unknown user false.
    fn assert_verifies(line: &str, user: &str, password: &str) {
        let htpasswd = file(&[line]);
        assert!(htpasswd.verify(user, password), "{line}: right password");
        assert!(
            !htpasswd.verify(user, "open sesamE"),
            "{line}: wrong password"
        );
        assert!(!htpasswd.verify(user, ""), "{line}: empty password");
        assert!(
            !htpasswd.verify(user, &format!("{password}x")),
            "{line}: password with a suffix"
        );
        assert!(
            !htpasswd.verify("mallory", password),
            "{line}: unknown user"
        );
        assert!(
            !htpasswd.verify(&user.to_uppercase(), password),
            "{line}: user names are case-sensitive"
        );
    }

    #[test]
    fn apr1_from_htpasswd_default_verifies() {
        assert_verifies(APR1_DEFAULT, "alice", PASSWORD);
        assert_verifies(APR1_M, "alice", PASSWORD);
    }

    #[test]
    fn apr1_from_openssl_verifies() {
        assert_verifies(APR1_OPENSSL, "alice", PASSWORD);
    }

    #[test]
    fn apr1_with_colon_and_non_ascii_password_verifies() {
        assert_verifies(APR1_BOB, "bob", BOB_PASSWORD);
    }

    #[test]
    fn apr1_empty_password_verifies_only_empty() {
        let htpasswd = file(&[APR1_EMPTY_PASSWORD]);
        assert!(htpasswd.verify("carol", ""));
        assert!(!htpasswd.verify("carol", " "));
    }

    #[test]
    fn md5_crypt_verifies() {
        assert_verifies(MD5_CRYPT, "alice", PASSWORD);
        let htpasswd = file(&[MD5_CRYPT_X]);
        assert!(htpasswd.verify("xavier", "x"));
        assert!(!htpasswd.verify("xavier", "y"));
    }

    #[test]
    fn apr1_and_md5_crypt_differ_only_in_magic() {
        // Same salt and digest under the other magic must not verify.
        let swapped = MD5_CRYPT.replace("$1$", "$apr1$");
        assert!(!file(&[&swapped]).verify("alice", PASSWORD));
    }

    #[test]
    fn bcrypt_2y_from_htpasswd_verifies() {
        assert_verifies(BCRYPT_2Y, "alice", PASSWORD);
        assert_verifies(BCRYPT_BOB, "bob", BOB_PASSWORD);
    }

    #[test]
    fn bcrypt_2a_and_2b_verify() {
        assert_verifies(BCRYPT_2A, "alice", PASSWORD);
        assert_verifies(BCRYPT_2B, "alice", PASSWORD);
    }

    #[test]
    fn bcrypt_uses_only_the_first_72_bytes_like_htpasswd() {
        let htpasswd = file(&[BCRYPT_LONG]);
        assert!(htpasswd.verify("dave", &"y".repeat(80)));
        assert!(htpasswd.verify("dave", &format!("{}zzz", "y".repeat(72))));
        assert!(!htpasswd.verify("dave", &"y".repeat(71)));
    }

    #[test]
    fn sha256_crypt_verifies() {
        assert_verifies(SHA256_CRYPT, "alice", PASSWORD);
        assert_verifies(SHA256_CRYPT_OPENSSL, "alice", PASSWORD);
    }

    #[test]
    fn sha256_crypt_with_rounds_verifies() {
        assert_verifies(SHA256_CRYPT_ROUNDS, "bob", BOB_PASSWORD);
    }

    #[test]
    fn sha512_crypt_verifies() {
        assert_verifies(SHA512_CRYPT, "alice", PASSWORD);
    }

    #[test]
    fn sha512_crypt_with_rounds_verifies() {
        assert_verifies(SHA512_CRYPT_ROUNDS, "alice", PASSWORD);
        assert_verifies(SHA512_CRYPT_OPENSSL_ROUNDS, "alice", PASSWORD);
    }

    #[test]
    fn sha_crypt_rounds_are_part_of_the_hash() {
        let altered = SHA512_CRYPT_OPENSSL_ROUNDS.replace("rounds=6000", "rounds=6001");
        assert!(!file(&[&altered]).verify("alice", PASSWORD));
    }

    #[test]
    fn sha1_verifies() {
        assert_verifies(SHA1, "alice", PASSWORD);
        assert_verifies(SHA1_BOB, "bob", BOB_PASSWORD);
    }

    #[test]
    fn ssha_verifies() {
        assert_verifies(SSHA, "alice", PASSWORD);
        assert_verifies(SSHA_BOB, "bob", BOB_PASSWORD);
    }

    #[test]
    fn plain_prefix_verifies() {
        assert_verifies(PLAIN, "alice", PASSWORD);
    }

    #[test]
    fn plain_prefix_with_empty_password_verifies_only_empty() {
        let htpasswd = file(&["erin:{PLAIN}"]);
        assert!(htpasswd.verify("erin", ""));
        assert!(!htpasswd.verify("erin", "x"));
    }

    #[test]
    fn unprefixed_plain_text_from_htpasswd_p_is_unsupported() {
        let (line, problem) = line_error(HTPASSWD_P);
        assert_eq!(line, 1);
        assert!(
            matches!(problem, Problem::Unsupported(m) if m.contains("{PLAIN}")),
            "{problem}"
        );
    }

    #[test]
    fn des_crypt_is_unsupported() {
        let (line, problem) = line_error(DES_CRYPT);
        assert_eq!(line, 1);
        assert!(
            matches!(problem, Problem::Unsupported(m) if m.contains("DES")),
            "{problem}"
        );
    }

    #[test]
    fn other_schemes_are_unsupported() {
        for value in [
            "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7",
            "$2x$04$qP9u7X8wiliDVKBwqAC1GO4Nac63LlUl82iBDeOAKN4xRWU2APRZa",
            "$3$$8846f7eaee8fb117ad06bdd830b7586c",
            "{MD5}X03MO1qnZdYdgyfeuILPmQ==",
            "{CRYPT}$1$kMCWZERv$.TOF0vLQM9jqCtiYbr/W2/",
        ] {
            let (line, problem) = line_error(&format!("# header\nalice:{value}"));
            assert_eq!(line, 2, "{value}");
            assert!(
                matches!(problem, Problem::Unsupported(_)),
                "{value}: {problem}"
            );
        }
    }

    #[test]
    fn excessive_costs_are_refused() {
        let (_, problem) =
            line_error("alice:$2y$18$qP9u7X8wiliDVKBwqAC1GO4Nac63LlUl82iBDeOAKN4xRWU2APRZa");
        assert!(
            matches!(problem, Problem::Unsupported(m) if m.contains("cost")),
            "{problem}"
        );
        let (_, problem) =
            line_error(&SHA512_CRYPT_ROUNDS.replace("rounds=10000", "rounds=1000001"));
        assert!(
            matches!(problem, Problem::Unsupported(m) if m.contains("rounds")),
            "{problem}"
        );
        assert_eq!(
            file(&[&SHA512_CRYPT_ROUNDS.replace("rounds=10000", "rounds=1000000")]).len(),
            1
        );
    }

    #[test]
    fn malformed_hashes_name_the_line() {
        let cases = [
            ("alice:$apr1$fIHDPoWx", "apr1"),
            ("alice:$apr1$fIHDPoWx$GS6i25HP0ZSmReiNjl.zy", "apr1"),
            ("alice:$apr1$fIHDPoWxx$GS6i25HP0ZSmReiNjl.zy1", "apr1"),
            ("alice:$apr1$fIHDPoWx$GS6i25HP0ZSmReiNjl!zy1", "apr1"),
            ("alice:$1$kMCWZERv$.TOF0vLQM9jqCtiYbr/W2", "MD5-crypt"),
            (
                "alice:$2y$04$qP9u7X8wiliDVKBwqAC1GO4Nac63LlUl82iBDeOAKN4xRWU2APRZ",
                "bcrypt",
            ),
            (
                "alice:$2y$4$qP9u7X8wiliDVKBwqAC1GO4Nac63LlUl82iBDeOAKN4xRWU2APRZa",
                "bcrypt",
            ),
            (
                "alice:$2y$03$qP9u7X8wiliDVKBwqAC1GO4Nac63LlUl82iBDeOAKN4xRWU2APRZa",
                "bcrypt",
            ),
            (
                "alice:$2y$04$qP9u7X8wiliDVKBwqAC1GO4Nac63LlUl82iBDeOAKN4xRWU2APR!a",
                "bcrypt",
            ),
            (
                "alice:$2y$04$qP9u7X8wiliDVKBwqAC1GO4Nac63LlUl82iBDeOAKN4xRWU2APRZé",
                "bcrypt",
            ),
            ("alice:$5$1lbgspyKpuO584HW$yrqseGZ", "SHA-256-crypt"),
            (
                "alice:$5$$yrqseGZ.Uv5uChrT1i5cMz09RsPIbuVFvgJ7aT18QS9",
                "SHA-256-crypt",
            ),
            (
                "alice:$5$rounds=999$1lbgspyKpuO584HW$yrqseGZ.Uv5uChrT1i5cMz09RsPIbuVFvgJ7aT18QS9",
                "SHA-256-crypt",
            ),
            (
                "alice:$5$rounds=x$1lbgspyKpuO584HW$yrqseGZ.Uv5uChrT1i5cMz09RsPIbuVFvgJ7aT18QS9",
                "SHA-256-crypt",
            ),
            (
                "alice:$5$1lbgspyKpuO584HWx$yrqseGZ.Uv5uChrT1i5cMz09RsPIbuVFvgJ7aT18QS9",
                "SHA-256-crypt",
            ),
            ("alice:$5$1lbgspyKpuO584HW", "SHA-256-crypt"),
            (
                "alice:$5$rounds=05000$1lbgspyKpuO584HW$yrqseGZ.Uv5uChrT1i5cMz09RsPIbuVFvgJ7aT18QS9",
                "SHA-256-crypt",
            ),
            (
                "alice:$5$1lbgspy!puO584HW$yrqseGZ.Uv5uChrT1i5cMz09RsPIbuVFvgJ7aT18QS9",
                "SHA-256-crypt",
            ),
            (
                "alice:$5$1lbgspyKpuO584HW$yrqseGZ.Uv5uChrT1i5cMz09RsPIbuVFvgJ7aT18QS9$",
                "SHA-256-crypt",
            ),
            ("alice:$1$kMCW!ERv$.TOF0vLQM9jqCtiYbr/W2/", "MD5-crypt"),
            ("alice:$6$z2MINCCgY7SI/XM4$9Ym36SQero2w$x", "SHA-512-crypt"),
            ("alice:{SHA}W8r/fyL/UzygmbNAjq2HbA67qa", "{SHA}"),
            ("alice:{SHA}not base64!", "{SHA}"),
            ("alice:{SSHA}gtDIVGSsOSXsMp6QxwDZ71Sg", "{SSHA}"),
        ];
        for (entry, expected_scheme) in cases {
            let text = format!("# generated\n\nok:{{PLAIN}}x\n{entry}\nlater:{{PLAIN}}y\n");
            let (line, problem) = line_error(&text);
            assert_eq!(line, 4, "{entry}");
            assert!(
                matches!(problem, Problem::Malformed { scheme, .. } if scheme == expected_scheme),
                "{entry}: {problem}"
            );
        }
    }

    #[test]
    fn line_without_colon_is_an_error_with_its_line_number() {
        assert_eq!(
            line_error("alice:{PLAIN}a\r\n# comment\r\nbob\r\n"),
            (3, Problem::MissingColon)
        );
    }

    #[test]
    fn empty_user_or_hash_is_an_error() {
        assert_eq!(line_error(":{PLAIN}x"), (1, Problem::EmptyUser));
        assert_eq!(line_error("\nalice:"), (2, Problem::EmptyHash));
        assert_eq!(line_error("alice::extra"), (1, Problem::EmptyHash));
    }

    #[test]
    fn errors_never_contain_the_hash_or_password() {
        let secret = "s3cr3tVALUE";
        for entry in [
            format!("alice:{secret}"),
            format!("alice:$apr1${secret}"),
            format!("alice:$5$rounds={secret}$salt$digest"),
            format!("alice:{{SHA}}{secret}"),
            format!("alice:{{SSHA}}{secret}"),
            format!("alice:$2y$04${secret}"),
            format!("alice:{{X}}{secret}"),
        ] {
            let Err(error) = Htpasswd::parse_file(&entry) else {
                panic!("accepted {entry}");
            };
            let shown = format!("{error} {error:?}");
            assert!(!shown.contains(secret), "{shown}");
        }
        let Err(error) = Htpasswd::from_map([("alice", secret)]) else {
            panic!("accepted");
        };
        assert!(!format!("{error} {error:?}").contains(secret));
    }

    #[test]
    fn debug_shows_neither_users_nor_hashes() {
        let shown = format!(
            "{:?}",
            file(&[APR1_DEFAULT, PLAIN.replace("alice", "zed").as_str()])
        );
        assert_eq!(shown, "Htpasswd { users: 2, .. }");
    }

    #[test]
    fn comments_blank_lines_and_crlf_are_accepted() {
        let text = format!(
            "# users for the admin area\r\n\r\n   \r\n{APR1_DEFAULT}\r\n#bob:nothing\r\n{BCRYPT_BOB}\r\n\r\n"
        );
        let htpasswd = match Htpasswd::parse_file(&text) {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(htpasswd.len(), 2);
        assert!(htpasswd.verify("alice", PASSWORD));
        assert!(htpasswd.verify("bob", BOB_PASSWORD));
        assert!(!htpasswd.verify("#bob", "nothing"));
    }

    #[test]
    fn mixed_formats_in_one_file_each_verify() {
        let htpasswd = file(&[
            APR1_DEFAULT,
            &BCRYPT_2Y.replace("alice", "b"),
            &SHA256_CRYPT.replace("alice", "c"),
            &SHA512_CRYPT.replace("alice", "d"),
            &SHA1.replace("alice", "e"),
            &SSHA.replace("alice", "f"),
            &PLAIN.replace("alice", "g"),
            &MD5_CRYPT.replace("alice", "h"),
        ]);
        assert_eq!(htpasswd.len(), 8);
        for user in ["alice", "b", "c", "d", "e", "f", "g", "h"] {
            assert!(htpasswd.verify(user, PASSWORD), "{user}");
            assert!(!htpasswd.verify(user, BOB_PASSWORD), "{user}");
        }
    }

    #[test]
    fn fields_after_the_hash_are_ignored_like_nginx() {
        let htpasswd = file(&[&format!("{APR1_DEFAULT}:Alice Example:admin")]);
        assert!(htpasswd.verify("alice", PASSWORD));
        // nginx also ends a {PLAIN} password at ':'.
        let htpasswd = file(&["alice:{PLAIN}pa:ss"]);
        assert!(htpasswd.verify("alice", "pa"));
        assert!(!htpasswd.verify("alice", "pa:ss"));
    }

    #[test]
    fn first_entry_wins_for_a_repeated_user() {
        let htpasswd = file(&["alice:{PLAIN}first", "alice:{PLAIN}second"]);
        assert_eq!(htpasswd.len(), 1);
        assert!(htpasswd.verify("alice", "first"));
        assert!(!htpasswd.verify("alice", "second"));
    }

    #[test]
    fn empty_file_has_no_users_and_verifies_nobody() {
        for text in ["", "\n", "# nobody yet\n"] {
            let htpasswd = file(&[text]);
            assert!(htpasswd.is_empty());
            assert_eq!(htpasswd.len(), 0);
            assert!(!htpasswd.verify("", ""));
            assert!(!htpasswd.verify("alice", PASSWORD));
        }
    }

    #[test]
    fn overlong_password_is_refused_without_hashing() {
        let long = "y".repeat(MAX_PASSWORD_LEN + 1);
        let htpasswd = file(&[&format!("alice:{{PLAIN}}{long}")]);
        assert!(!htpasswd.verify("alice", &long));
        let fits = "y".repeat(MAX_PASSWORD_LEN);
        let htpasswd = file(&[&format!("alice:{{PLAIN}}{fits}")]);
        assert!(htpasswd.verify("alice", &fits));
    }

    #[test]
    fn unknown_user_never_verifies_even_with_the_dummys_password() {
        // The dummy is a copy of the first entry; its password must not work for any other name.
        let htpasswd = file(&[APR1_DEFAULT]);
        assert!(!htpasswd.verify("alice2", PASSWORD));
        assert!(!htpasswd.verify("", PASSWORD));
        assert!(!htpasswd.verify("alice ", PASSWORD));
    }

    #[test]
    fn unknown_user_costs_as_much_as_a_known_one() {
        // Without the dummy an unknown user would take microseconds against ~50 ms of bcrypt at cost 10, a
        // ratio in the thousands; the 10x margin keeps this robust on a loaded machine.
        let line = "alice:$2y$10$qP9u7X8wiliDVKBwqAC1GO4Nac63LlUl82iBDeOAKN4xRWU2APRZa";
        let htpasswd = file(&[line]);
        let time = |user: &str| {
            let start = std::time::Instant::now();
            std::hint::black_box(htpasswd.verify(user, "guess"));
            start.elapsed()
        };
        let known = time("alice");
        let unknown = time("mallory");
        assert!(
            unknown * 10 > known,
            "unknown {unknown:?} vs known {known:?}"
        );
    }

    #[test]
    fn apr1_salt_may_hold_any_character_like_nginx() {
        // nginx's ngx_crypt_apr1 takes the salt up to '$' or 8 bytes without checking its alphabet.
        // `openssl passwd -apr1 -salt 'sa!t_-x' 'open sesame'`
        assert_verifies(
            "alice:$apr1$sa!t_-x$xA69HzfcgM1zogfoHxyoT/",
            "alice",
            PASSWORD,
        );
    }

    #[test]
    fn auth_map_entries_verify() {
        let bob_hash = BCRYPT_BOB.trim_start_matches("bob:");
        let alice_hash = APR1_DEFAULT.trim_start_matches("alice:");
        let htpasswd = match Htpasswd::from_map([("alice", alice_hash), ("bob", bob_hash)]) {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(htpasswd.len(), 2);
        assert!(htpasswd.verify("alice", PASSWORD));
        assert!(htpasswd.verify("bob", BOB_PASSWORD));
        assert!(!htpasswd.verify("alice", BOB_PASSWORD));
        assert!(!htpasswd.verify("carol", PASSWORD));
    }

    #[test]
    fn auth_map_value_may_end_with_one_line_break() {
        let value = format!("{}\n", SHA1.trim_start_matches("alice:"));
        let crlf = format!("{}\r\n", SSHA.trim_start_matches("alice:"));
        let htpasswd = match Htpasswd::from_map([("alice", value.as_str()), ("a2", crlf.as_str())])
        {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        };
        assert!(htpasswd.verify("alice", PASSWORD));
        assert!(htpasswd.verify("a2", PASSWORD));
    }

    #[test]
    fn auth_map_value_cannot_smuggle_more_users() {
        let error = Htpasswd::from_map([("alice", "{PLAIN}a\nmallory:{PLAIN}b")]).err();
        assert_eq!(
            error,
            Some(HtpasswdError::MapEntry {
                user: "alice".to_owned(),
                problem: Problem::MultiLine
            })
        );
    }

    #[test]
    fn auth_map_errors_name_the_key() {
        let cases = [
            ("", "{PLAIN}x", Problem::EmptyUser),
            ("a:b", "{PLAIN}x", Problem::InvalidUser),
            ("a\nb", "{PLAIN}x", Problem::InvalidUser),
            ("carol", "", Problem::EmptyHash),
            ("carol", "\n", Problem::EmptyHash),
        ];
        for (user, value, problem) in cases {
            let error = Htpasswd::from_map([("ok", "{PLAIN}y"), (user, value)]).err();
            assert_eq!(
                error,
                Some(HtpasswdError::MapEntry {
                    user: user.to_owned(),
                    problem
                }),
                "{user:?}"
            );
        }
        let error = Htpasswd::from_map([("dave", "open sesame")]).err();
        assert!(
            matches!(&error, Some(HtpasswdError::MapEntry { user, problem: Problem::Unsupported(_) }) if user == "dave"),
            "{error:?}"
        );
    }

    #[test]
    fn error_messages_read_well() {
        assert_eq!(
            line_error("a:{PLAIN}x\nbob").1.to_string(),
            "no ':' between the user name and the password hash"
        );
        assert_eq!(
            Htpasswd::parse_file("a:{PLAIN}x\nbob")
                .err()
                .map(|e| e.to_string()),
            Some("line 2: no ':' between the user name and the password hash".to_owned())
        );
        assert_eq!(
            Htpasswd::parse_file("alice:{SHA}AAAA")
                .err()
                .map(|e| e.to_string()),
            Some("line 1: malformed {SHA} hash: not a 20-byte SHA-1 digest".to_owned())
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz over prefixes and lengths around every format's boundaries.
        let seeds = [
            APR1_DEFAULT,
            MD5_CRYPT,
            BCRYPT_2Y,
            SHA256_CRYPT_ROUNDS,
            SHA512_CRYPT,
            SHA1,
            SSHA,
            PLAIN,
        ];
        for seed in seeds {
            for end in 0..=seed.len() {
                let Some(prefix) = seed.get(..end) else {
                    continue;
                };
                for suffix in ["", "$", "é", ":", "\r", "$$$", "=", "rounds=1000$"] {
                    let text = format!("{prefix}{suffix}");
                    if let Ok(htpasswd) = Htpasswd::parse_file(&text) {
                        let _ = htpasswd.verify("alice", "é:x");
                    }
                    let _ = Htpasswd::from_map([("alice", text.as_str())]);
                }
            }
        }
    }
}
