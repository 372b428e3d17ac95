//! Request path normalisation and Ingress path matching.
//!
//! Owns two pure decisions and nothing else (no I/O, no Kubernetes types):
//!
//! 1. [`normalize`]: turn the path of a request URI into the one form that rules are matched against, the
//!    way nginx does before `location` matching, or refuse it ([`PathError`], the proxy answers 400).
//! 2. [`matches()`] / [`precedence_key`]: does an Ingress `path` + `pathType` match a normalised path, and in
//!    which order are one host's rules tried.
//!
//! ```text
//!   raw path ──normalize──► normal path ──┬─ matches(Exact,  "/a/b",  ·)   rules sorted by
//!   "/a/%2e/b//c%3f"        "/a/b/c%3F"   ├─ matches(Prefix, "/a",    ·)   precedence_key,
//!                                         └─ matches(Prefix, "/",     ·)   first match wins
//! ```
//!
//! SECURITY: path-scoped rules (auth, rate limits, a different backend) are only as strong as the claim
//! "every spelling of a path reaches the rule its normal form reaches". [`normalize`] therefore either
//! produces the single normal form or refuses the request; it never lets an encoded form through that a
//! backend could decode into something else (`%2F`, `%5C`, `%00`, a raw `\`).
//!
//! Where this differs from nginx (`ngx_http_parse_complex_uri`), on purpose:
//! - nginx decodes *every* escape into `$uri` (`%3F` becomes `?`); we decode only unreserved characters
//!   and keep the rest encoded (RFC 3986 §6.2.2), so the normal form is still a valid URI path that can
//!   be forwarded as is. Ingress paths can only hold unreserved characters and `/` (ingress-nginx's strict
//!   path validation), so this changes no match.
//! - nginx decodes `%2F` into a real `/` and treats `%5C` / `\` as ordinary bytes (as a separator only
//!   on Windows); we refuse all three.
//! - Same as nginx: `%2E` takes part in dot-segment removal, malformed escapes and `%00` are a 400, and
//!   a `..` above the root is a 400.

use std::borrow::Cow;
use std::cmp::Reverse;

/// Why a request path was refused (the proxy answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty or does not start with `/` (e.g. `*`, or an absolute-form leftover).
    #[error("request path does not start with '/'")]
    NotAbsolute,
    /// A `%` not followed by two hex digits (`%zz`, `%4`, a trailing `%`).
    #[error("request path has malformed percent-encoding at byte {at}")]
    BadPercentEncoding {
        /// Byte offset of the offending `%` in the raw path.
        at: usize,
    },
    /// `%2F`: a backend that decodes it sees a different path structure than the one that was routed.
    #[error("request path contains an encoded '/' (%2F)")]
    EncodedSlash,
    /// `%5C`: many backends treat `\` as a path separator.
    #[error("request path contains an encoded '\\' (%5C)")]
    EncodedBackslash,
    /// A raw `\`: not a legal URI character (RFC 3986), and a path separator to many backends.
    #[error("request path contains a raw '\\'")]
    Backslash,
    /// `%00` or a raw NUL byte: truncates the path in C-string backends.
    #[error("request path contains a NUL byte (raw or %00)")]
    NulByte,
    /// A `..` segment that would climb above `/` (nginx answers 400 too).
    #[error("request path climbs above the root with '..'")]
    EscapesRoot,
}

/// Normalise the path part of a request URI (no query string; the caller splits it off) the way nginx
/// does before location matching:
///
/// - percent-encoded *unreserved* characters (`ALPHA / DIGIT / - . _ ~`) are decoded, so `%2E` becomes
///   `.` and then takes part in dot-segment removal;
/// - every other percent-encoding is kept, with upper-case hex (`%3f` → `%3F`), so it is never decoded
///   twice and never turns into a delimiter;
/// - repeated slashes are merged (nginx `merge_slashes on`);
/// - `.` and `..` segments are resolved; a final `.` or `..` leaves a trailing slash (`/a/b/..` → `/a/`).
///
/// Refused ([`PathError`]): a path not starting with `/`, malformed percent-encoding, `%2F`, `%5C`,
/// `%00`, a raw NUL or `\`, and a `..` that climbs above the root.
///
/// Returns the input borrowed when it is already normal (the common case: no allocation).
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if is_normal(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    normalize_slow(raw).map(Cow::Owned)
}

/// Fast path: true only when `normalize_slow(raw) == Ok(raw)`. Any doubt (including every error case)
/// answers false and leaves the verdict to the slow path, so this check only has to be complete for
/// normal input, never right about errors.
fn is_normal(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix('/') else {
        return false;
    };
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        // An empty segment anywhere but at the end is a "//".
        if (segment.is_empty() && !is_last) || segment == "." || segment == ".." {
            return false;
        }
        if !segment_is_normal(segment.as_bytes()) {
            return false;
        }
    }
    true
}

/// Every escape is canonical (upper-case hex, a character we keep encoded) and no byte is refused.
fn segment_is_normal(segment: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = segment.get(i) {
        match b {
            b'\0' | b'\\' => return false,
            b'%' => {
                let (Some(&hi), Some(&lo)) = (segment.get(i + 1), segment.get(i + 2)) else {
                    return false;
                };
                let (Some(h), Some(l)) = (upper_hex_value(hi), upper_hex_value(lo)) else {
                    return false;
                };
                if escape_disposition((h << 4) | l) != Ok(Escape::Keep) {
                    return false;
                }
                i += 3;
            }
            _ => i += 1,
        }
    }
    true
}

fn normalize_slow(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode_unreserved(raw)?;
    remove_dot_segments(&decoded)
}

/// What to do with one decoded `%XX` byte.
#[derive(Debug, PartialEq, Eq)]
enum Escape {
    /// An unreserved character: equivalent to its literal form (RFC 3986 §2.3), so decode it.
    Decode(char),
    /// Anything else: keep it encoded (canonical upper-case hex).
    Keep,
}

fn escape_disposition(byte: u8) -> Result<Escape, PathError> {
    match byte {
        0x00 => Err(PathError::NulByte),
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::EncodedBackslash),
        b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
            Ok(Escape::Decode(char::from(b)))
        }
        _ => Ok(Escape::Keep),
    }
}

/// Decode `%XX` escapes of unreserved characters, upper-case the hex of all others, refuse the dangerous
/// ones.
///
/// Hand-written over bytes rather than with the `percent-encoding` crate: that crate decodes every escape
/// (or none), while here the decision is per character — unreserved ones are decoded, reserved ones must
/// stay encoded (decoding `%3F` would make it a query delimiter, `%25` would be decoded twice later), and
/// a few are refused outright. Malformed escapes are an error here, where the crate passes them through.
///
/// Only ASCII is ever substituted for ASCII, and non-ASCII input is copied in whole spans between `%`
/// signs, so the result is valid UTF-8 by construction and no slice boundary can fall inside a character.
fn decode_unreserved(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    // Start of the span of `raw` not yet copied to `out`.
    let mut copied = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\0' => return Err(PathError::NulByte),
            b'\\' => return Err(PathError::Backslash),
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::BadPercentEncoding { at: i });
                };
                let byte = (hi << 4) | lo;
                // `copied` and `i` index ASCII bytes, so they are char boundaries; fail closed rather
                // than drop text if that ever stopped being true.
                let span = raw
                    .get(copied..i)
                    .ok_or(PathError::BadPercentEncoding { at: i })?;
                out.push_str(span);
                match escape_disposition(byte)? {
                    Escape::Decode(c) => out.push(c),
                    Escape::Keep => {
                        out.push('%');
                        out.push(upper_hex_digit(hi));
                        out.push(upper_hex_digit(lo));
                    }
                }
                i += 3;
                copied = i;
            }
            _ => i += 1,
        }
    }
    let tail = raw
        .get(copied..)
        .ok_or(PathError::BadPercentEncoding { at: copied })?;
    out.push_str(tail);
    Ok(out)
}

/// Merge slashes and resolve `.` / `..` segments of a decoded absolute path.
fn remove_dot_segments(decoded: &str) -> Result<String, PathError> {
    let Some(rest) = decoded.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    // Invariant: `out` starts with '/' and every segment pushed is followed by '/'.
    let mut out = String::with_capacity(decoded.len());
    out.push('/');
    // Whether the last segment asks for a trailing slash ("", "." or "..", like nginx and RFC 3986).
    let mut trailing_slash = true;
    for segment in rest.split('/') {
        match segment {
            "" | "." => trailing_slash = true,
            ".." => {
                // `out` is "/" or "/seg/.../seg/"; drop the last "seg/".
                let without_final_slash = out.len() - 1;
                if without_final_slash == 0 {
                    return Err(PathError::EscapesRoot);
                }
                let keep = out
                    .get(..without_final_slash)
                    .and_then(|s| s.rfind('/'))
                    .map_or(1, |slash| slash + 1);
                out.truncate(keep);
                trailing_slash = true;
            }
            segment => {
                out.push_str(segment);
                out.push('/');
                trailing_slash = false;
            }
        }
    }
    if !trailing_slash && out.len() > 1 {
        out.pop();
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Like [`hex_value`], but lower-case hex is not canonical.
fn upper_hex_value(b: u8) -> Option<u8> {
    if b.is_ascii_lowercase() {
        None
    } else {
        hex_value(b)
    }
}

fn upper_hex_digit(nibble: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(nibble & 0x0F)])
}

/// Kubernetes Ingress pathType.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathType {
    Exact,
    Prefix,
    ImplementationSpecific,
}

/// Does an Ingress path rule match a (normalised, see [`normalize`]) request path?
///
/// - `Exact`: the whole path, case-sensitive; `/foo/` does not match `/foo` and vice versa.
/// - `Prefix` and `ImplementationSpecific`: element-wise prefix per the Kubernetes spec: the rule's
///   `/`-separated elements must equal the request's first elements. `/foo` matches `/foo`, `/foo/` and
///   `/foo/bar`, never `/foobar`; `/` matches everything; a trailing slash on the rule is ignored
///   (`/aaa/bbb/` matches `/aaa/bbb`). Empty elements (from `//`) are ignored on both sides.
pub fn matches(path_type: PathType, rule: &str, request_path: &str) -> bool {
    match path_type {
        PathType::Exact => rule == request_path,
        PathType::Prefix | PathType::ImplementationSpecific => {
            let mut request = elements(request_path);
            elements(rule).all(|element| request.next() == Some(element))
        }
    }
}

fn elements(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|element| !element.is_empty())
}

/// Sort key: rules sorted ascending by this key are tried in order, first match wins.
///
/// Longest path first; at equal length `Exact` before `Prefix` (`ImplementationSpecific` counts as
/// `Prefix`). A prefix rule's length is taken without its trailing slashes — `/foo/` matches exactly what
/// `/foo` matches — so an `Exact` rule always outranks every prefix rule that can match the same request
/// (nginx: an `=` location always wins). Two prefix rules of equal key that both match one request are
/// the same rule up to trailing slashes; a stable sort keeps their input order for the caller to resolve.
///
/// The key borrows nothing from `rule`, so it works with `sort_by_key`.
pub fn precedence_key(path_type: PathType, rule: &str) -> impl Ord + use<> {
    let (len, kind) = match path_type {
        PathType::Exact => (rule.len(), 0u8),
        PathType::Prefix | PathType::ImplementationSpecific => {
            (rule.trim_end_matches('/').len(), 1u8)
        }
    };
    (Reverse(len), kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathType::{Exact, ImplementationSpecific, Prefix};
    use proptest::prelude::*;

    fn norm(raw: &str) -> Result<String, PathError> {
        normalize(raw).map(Cow::into_owned)
    }

    fn ok(s: &str) -> Result<String, PathError> {
        Ok(s.to_owned())
    }

    /// The rule that serves `request` among one host's `rules`, the way the proxy will pick it.
    fn route<'a>(rules: &[(PathType, &'a str)], request: &str) -> Option<(PathType, &'a str)> {
        let mut sorted = rules.to_vec();
        sorted.sort_by_key(|&(path_type, rule)| precedence_key(path_type, rule));
        sorted
            .into_iter()
            .find(|&(path_type, rule)| matches(path_type, rule, request))
    }

    // ---- normalize: paths that are already normal -------------------------------------------------

    #[test]
    fn already_normal_path_is_borrowed() {
        for raw in [
            "/",
            "/a",
            "/a/",
            "/a/b.c/d%3F",
            "/caf\u{e9}/x",
            "/.a/..b/.../",
        ] {
            assert!(
                matches!(normalize(raw), Ok(Cow::Borrowed(p)) if p == raw),
                "{raw}"
            );
        }
    }

    #[test]
    fn dot_like_segments_are_ordinary_segments() {
        assert_eq!(norm("/.../a"), ok("/.../a"));
        assert_eq!(norm("/..a/.b/c./d.."), ok("/..a/.b/c./d.."));
    }

    #[test]
    fn non_ascii_characters_pass_through_unchanged() {
        assert_eq!(norm("/caf\u{e9}//\u{1f600}"), ok("/caf\u{e9}/\u{1f600}"));
    }

    // ---- normalize: rewriting rules ---------------------------------------------------------------

    #[test]
    fn repeated_slashes_are_merged() {
        assert_eq!(norm("//"), ok("/"));
        assert_eq!(norm("///a//b///c"), ok("/a/b/c"));
        assert_eq!(norm("/a//"), ok("/a/"));
    }

    #[test]
    fn trailing_slash_is_kept() {
        assert_eq!(norm("/a/b/"), ok("/a/b/"));
        assert_eq!(norm("/a/./b/"), ok("/a/b/"));
    }

    #[test]
    fn single_dot_segments_are_removed() {
        assert_eq!(norm("/./a/./b"), ok("/a/b"));
        assert_eq!(norm("/."), ok("/"));
        assert_eq!(norm("/./"), ok("/"));
    }

    #[test]
    fn trailing_single_dot_leaves_a_trailing_slash() {
        assert_eq!(norm("/a/."), ok("/a/"));
    }

    #[test]
    fn double_dot_segment_removes_the_previous_segment() {
        assert_eq!(norm("/a/b/../c"), ok("/a/c"));
        assert_eq!(norm("/a/../b"), ok("/b"));
        assert_eq!(norm("/a/b/c/../../d"), ok("/a/d"));
        assert_eq!(
            norm("/a//../b"),
            ok("/b"),
            "slashes merge before .. resolves"
        );
    }

    #[test]
    fn trailing_double_dot_leaves_a_trailing_slash() {
        assert_eq!(norm("/a/b/.."), ok("/a/"));
        assert_eq!(norm("/a/.."), ok("/"));
        assert_eq!(norm("/a/../"), ok("/"));
    }

    #[test]
    fn encoded_unreserved_characters_are_decoded() {
        assert_eq!(norm("/%61%62%43"), ok("/abC"));
        assert_eq!(norm("/%30%39%2d%2E%5f%7E"), ok("/09-._~"));
        assert_eq!(norm("/%7e%7E"), ok("/~~"));
    }

    #[test]
    fn encoded_dots_take_part_in_dot_segment_removal() {
        assert_eq!(norm("/a/%2e/b"), ok("/a/b"));
        assert_eq!(norm("/a/b/%2E%2e/c"), ok("/a/c"));
        assert_eq!(norm("/a/b/.%2E"), ok("/a/"));
        assert_eq!(norm("/admin/%2e%2e/public"), ok("/public"));
    }

    #[test]
    fn encoded_reserved_characters_stay_encoded_with_upper_case_hex() {
        assert_eq!(norm("/a%3fb"), ok("/a%3Fb"));
        assert_eq!(norm("/%3a%3B%20%40"), ok("/%3A%3B%20%40"));
        assert_eq!(norm("/caf%c3%a9"), ok("/caf%C3%A9"));
    }

    #[test]
    fn encoded_percent_is_not_decoded_twice() {
        assert_eq!(norm("/%252e%252E"), ok("/%252e%252E"));
        assert_eq!(norm("/%25%32%45"), ok("/%252E"));
        assert!(matches!(normalize("/%252E"), Ok(Cow::Borrowed(_))));
    }

    // ---- normalize: rejections --------------------------------------------------------------------

    #[test]
    fn path_not_starting_with_slash_is_rejected() {
        for raw in ["", "a/b", "*", "%2Fa", "http://h/a", " /a"] {
            assert_eq!(norm(raw), Err(PathError::NotAbsolute), "{raw:?}");
        }
    }

    #[test]
    fn malformed_percent_encoding_is_rejected_with_its_offset() {
        assert_eq!(norm("/%zz"), Err(PathError::BadPercentEncoding { at: 1 }));
        assert_eq!(norm("/a/%4"), Err(PathError::BadPercentEncoding { at: 3 }));
        assert_eq!(norm("/a%"), Err(PathError::BadPercentEncoding { at: 2 }));
        assert_eq!(norm("/%4g"), Err(PathError::BadPercentEncoding { at: 1 }));
        assert_eq!(norm("/%%41"), Err(PathError::BadPercentEncoding { at: 1 }));
        assert_eq!(
            norm("/%\u{e9}"),
            Err(PathError::BadPercentEncoding { at: 1 })
        );
        assert_eq!(
            norm("/ok/%41/%x"),
            Err(PathError::BadPercentEncoding { at: 8 })
        );
    }

    #[test]
    fn encoded_slash_is_rejected() {
        assert_eq!(norm("/a%2Fb"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/admin%2f"), Err(PathError::EncodedSlash));
    }

    #[test]
    fn encoded_backslash_is_rejected() {
        assert_eq!(norm("/a%5Cb"), Err(PathError::EncodedBackslash));
        assert_eq!(norm("/a%5c..%5cadmin"), Err(PathError::EncodedBackslash));
    }

    #[test]
    fn raw_backslash_is_rejected() {
        assert_eq!(norm("/public\\..\\admin"), Err(PathError::Backslash));
    }

    #[test]
    fn nul_byte_raw_or_encoded_is_rejected() {
        assert_eq!(norm("/a%00b"), Err(PathError::NulByte));
        assert_eq!(norm("/a\0b"), Err(PathError::NulByte));
    }

    #[test]
    fn double_dot_climbing_above_the_root_is_rejected() {
        for raw in [
            "/..",
            "/../",
            "/../a",
            "/a/../..",
            "/a/../../b",
            "/%2E%2E",
            "/a/%2e%2E/%2E./x",
            "//../a",
        ] {
            assert_eq!(norm(raw), Err(PathError::EscapesRoot), "{raw}");
        }
    }

    #[test]
    fn errors_describe_the_problem() {
        assert_eq!(
            PathError::BadPercentEncoding { at: 3 }.to_string(),
            "request path has malformed percent-encoding at byte 3"
        );
        assert_eq!(
            PathError::EncodedSlash.to_string(),
            "request path contains an encoded '/' (%2F)"
        );
        assert_eq!(
            PathError::EscapesRoot.to_string(),
            "request path climbs above the root with '..'"
        );
    }

    // ---- matches: the Kubernetes Ingress spec's examples table ------------------------------------
    // https://kubernetes.io/docs/concepts/services-networking/ingress/#examples

    #[test]
    fn prefix_root_matches_every_path() {
        for request in ["/", "/a", "/a/", "/a/b/c", "/%3F"] {
            assert!(matches(Prefix, "/", request), "{request}");
        }
    }

    #[test]
    fn exact_matches_the_identical_path() {
        assert!(matches(Exact, "/foo", "/foo"));
    }

    #[test]
    fn exact_does_not_match_another_path() {
        assert!(!matches(Exact, "/foo", "/bar"));
        assert!(!matches(Exact, "/foo", "/foo/bar"));
    }

    #[test]
    fn exact_does_not_match_an_added_trailing_slash() {
        assert!(!matches(Exact, "/foo", "/foo/"));
    }

    #[test]
    fn exact_does_not_match_a_removed_trailing_slash() {
        assert!(!matches(Exact, "/foo/", "/foo"));
    }

    #[test]
    fn prefix_matches_the_path_with_and_without_trailing_slash() {
        assert!(matches(Prefix, "/foo", "/foo"));
        assert!(matches(Prefix, "/foo", "/foo/"));
    }

    #[test]
    fn prefix_with_trailing_slash_matches_the_path_with_and_without_it() {
        assert!(matches(Prefix, "/foo/", "/foo"));
        assert!(matches(Prefix, "/foo/", "/foo/"));
        assert!(matches(Prefix, "/aaa/bbb/", "/aaa/bbb"));
        assert!(matches(Prefix, "/aaa/bbb/", "/aaa/bbb/ccc"));
        assert!(!matches(Prefix, "/aaa/bbb/", "/aaa/bbbxyz"));
    }

    #[test]
    fn prefix_does_not_match_a_longer_last_element() {
        assert!(!matches(Prefix, "/aaa/bb", "/aaa/bbb"));
    }

    #[test]
    fn prefix_matches_the_identical_path() {
        assert!(matches(Prefix, "/aaa/bbb", "/aaa/bbb"));
    }

    #[test]
    fn prefix_matches_a_subpath() {
        assert!(matches(Prefix, "/aaa/bbb", "/aaa/bbb/"));
        assert!(matches(Prefix, "/aaa/bbb", "/aaa/bbb/ccc"));
    }

    #[test]
    fn prefix_does_not_match_sibling_segment() {
        assert!(!matches(Prefix, "/aaa/bbb", "/aaa/bbbxyz"));
        assert!(!matches(Prefix, "/foo", "/foobar"));
    }

    #[test]
    fn longest_matching_prefix_wins() {
        let rules = [(Prefix, "/"), (Prefix, "/aaa")];
        assert_eq!(route(&rules, "/aaa/ccc"), Some((Prefix, "/aaa")));
        let rules = [(Prefix, "/"), (Prefix, "/aaa"), (Prefix, "/aaa/bbb")];
        assert_eq!(route(&rules, "/aaa/bbb"), Some((Prefix, "/aaa/bbb")));
        assert_eq!(route(&rules, "/ccc"), Some((Prefix, "/")));
    }

    #[test]
    fn unmatched_path_falls_through_to_the_default_backend() {
        assert_eq!(route(&[(Prefix, "/aaa")], "/ccc"), None);
    }

    #[test]
    fn exact_wins_over_prefix_with_the_same_path() {
        let rules = [(Prefix, "/foo"), (Exact, "/foo")];
        assert_eq!(route(&rules, "/foo"), Some((Exact, "/foo")));
        assert_eq!(route(&rules, "/foo/"), Some((Prefix, "/foo")));
    }

    // ---- matches / precedence_key: beyond the table -----------------------------------------------

    #[test]
    fn matching_is_case_sensitive() {
        assert!(!matches(Exact, "/Foo", "/foo"));
        assert!(!matches(Prefix, "/Foo", "/foo/bar"));
    }

    #[test]
    fn implementation_specific_matches_like_prefix() {
        assert!(matches(ImplementationSpecific, "/foo", "/foo/bar"));
        assert!(matches(ImplementationSpecific, "/foo/", "/foo"));
        assert!(!matches(ImplementationSpecific, "/foo", "/foobar"));
    }

    #[test]
    fn prefix_ignores_repeated_slashes_in_the_rule() {
        assert!(matches(Prefix, "/admin//x", "/admin/x/y"));
        assert!(matches(Prefix, "//", "/anything"));
    }

    #[test]
    fn longer_rule_is_tried_before_shorter() {
        let rules = [(Exact, "/a"), (Prefix, "/a/b/c"), (Prefix, "/a/b")];
        assert_eq!(route(&rules, "/a/b/c/d"), Some((Prefix, "/a/b/c")));
    }

    #[test]
    fn prefix_trailing_slash_does_not_outrank_exact() {
        let rules = [(Prefix, "/foo/"), (Exact, "/foo")];
        assert_eq!(route(&rules, "/foo"), Some((Exact, "/foo")));
    }

    #[test]
    fn implementation_specific_ranks_as_prefix() {
        assert!(precedence_key(ImplementationSpecific, "/ab") == precedence_key(Prefix, "/ab"));
        assert!(precedence_key(Exact, "/ab") < precedence_key(ImplementationSpecific, "/ab"));
        assert!(precedence_key(ImplementationSpecific, "/abc") < precedence_key(Exact, "/ab"));
    }

    // ---- properties -------------------------------------------------------------------------------

    /// One piece of a generated raw path. Rendering decides its spelling; its meaning is fixed.
    #[derive(Debug, Clone)]
    enum Piece {
        Slash,
        /// An unreserved character, which may be spelled literally or percent-encoded.
        Unreserved(char),
        /// Text kept as is in every spelling (reserved escapes, other literals, non-ASCII).
        Fixed(&'static str),
    }

    fn piece() -> impl Strategy<Value = Piece> {
        prop_oneof![
            4 => Just(Piece::Slash),
            6 => prop::sample::select(
                "abzAZ09-._~".chars().collect::<Vec<_>>()
            ).prop_map(Piece::Unreserved),
            1 => prop::sample::select(vec![
                "%3F", "%3f", "%20", "%25", "%C3%A9", "%e2%82%ac", ";", "@", ":", "!", "\u{e9}", "..", "."
            ]).prop_map(Piece::Fixed),
        ]
    }

    fn path_pieces() -> impl Strategy<Value = Vec<Piece>> {
        prop::collection::vec(piece(), 0..24)
    }

    /// How to spell a path: per-position choices, reused cyclically.
    #[derive(Debug, Clone)]
    struct Spelling {
        encode: Vec<bool>,
        lower_hex: Vec<bool>,
        /// Noise after a slash: 0 none, 1 an extra "/", 2 "./", 3 "%2e/", 4 "x/../".
        noise: Vec<u8>,
    }

    fn spelling() -> impl Strategy<Value = Spelling> {
        (
            prop::collection::vec(any::<bool>(), 1..8),
            prop::collection::vec(any::<bool>(), 1..8),
            prop::collection::vec(0u8..5, 1..8),
        )
            .prop_map(|(encode, lower_hex, noise)| Spelling {
                encode,
                lower_hex,
                noise,
            })
    }

    fn pick<T: Copy>(choices: &[T], i: usize, default: T) -> T {
        choices
            .get(i % choices.len().max(1))
            .copied()
            .unwrap_or(default)
    }

    /// Always starts with '/'; `spelling: None` is the plain spelling.
    fn render(pieces: &[Piece], spelling: Option<&Spelling>) -> String {
        let mut out = String::from("/");
        for (i, p) in pieces.iter().enumerate() {
            match (p, spelling) {
                (Piece::Slash, None) => out.push('/'),
                (Piece::Slash, Some(s)) => {
                    out.push('/');
                    out.push_str(match pick(&s.noise, i, 0) {
                        1 => "/",
                        2 => "./",
                        3 => "%2e/",
                        4 => "x/../",
                        _ => "",
                    });
                }
                (Piece::Unreserved(c), Some(s)) if pick(&s.encode, i, false) => {
                    let hex = format!("%{:02X}", u32::from(*c));
                    if pick(&s.lower_hex, i, false) {
                        out.push_str(&hex.to_ascii_lowercase());
                    } else {
                        out.push_str(&hex);
                    }
                }
                (Piece::Unreserved(c), _) => out.push(*c),
                (Piece::Fixed(text), _) => out.push_str(text),
            }
        }
        out
    }

    /// Arbitrary text biased towards the interesting bytes of a path.
    fn path_like() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![
                "/", "/", "/", ".", "..", "a", "B", "~", "%", "%2", "%2E", "%2e", "%2F", "%5c",
                "%00", "%41", "%3f", "%zz", "\\", "\0", "\u{e9}", "%C3",
            ]),
            0..20,
        )
        .prop_map(|parts| parts.concat())
    }

    /// Garbage, near-paths, and mostly valid paths (so that the Ok branches are well exercised).
    fn any_path() -> impl Strategy<Value = String> {
        prop_oneof![
            1 => any::<String>(),
            1 => path_like(),
            2 => path_like().prop_map(|p| format!("/{p}")),
            2 => path_pieces().prop_map(|p| render(&p, None)),
            2 => (path_pieces(), spelling()).prop_map(|(p, s)| render(&p, Some(&s))),
        ]
    }

    proptest! {
        #[test]
        fn normalize_never_panics_and_results_are_absolute(raw in any_path()) {
            if let Ok(normal) = normalize(&raw) {
                prop_assert!(normal.starts_with('/'));
            }
        }

        #[test]
        fn fast_path_agrees_with_slow_path(raw in any_path()) {
            let fast = normalize(&raw).map(Cow::into_owned);
            prop_assert_eq!(fast, normalize_slow(&raw));
        }

        #[test]
        fn unchanged_paths_are_borrowed(raw in any_path()) {
            if let Ok(normal) = normalize(&raw) {
                prop_assert_eq!(matches!(normal, Cow::Borrowed(_)), normal == raw);
            }
        }

        #[test]
        fn normalize_is_idempotent(raw in any_path()) {
            if let Ok(normal) = normalize(&raw) {
                let again = normalize(&normal);
                prop_assert!(matches!(again, Ok(Cow::Borrowed(p)) if p == normal.as_ref()));
            }
        }

        #[test]
        fn normal_paths_have_no_empty_or_dot_segments(raw in any_path()) {
            if let Ok(normal) = normalize(&raw) {
                for bad in ["//", "/./", "/../"] {
                    prop_assert!(!normal.contains(bad), "{:?} contains {:?}", normal, bad);
                }
                prop_assert!(!normal.ends_with("/.") && !normal.ends_with("/.."), "{:?}", normal);
            }
        }

        #[test]
        fn encoding_unreserved_characters_never_changes_the_result(
            pieces in path_pieces(), spelling in spelling(),
        ) {
            let encoded_only = Spelling { noise: vec![0], ..spelling };
            prop_assert_eq!(
                norm(&render(&pieces, Some(&encoded_only))),
                norm(&render(&pieces, None))
            );
        }

        #[test]
        fn prefix_match_is_independent_of_spelling(
            pieces in path_pieces(), spelling in spelling(), rule in path_pieces(),
        ) {
            let plain = norm(&render(&pieces, None));
            let noisy = norm(&render(&pieces, Some(&spelling)));
            prop_assert_eq!(&plain, &noisy);
            if let (Ok(plain), Ok(noisy)) = (plain, noisy) {
                let rule = render(&rule, None);
                prop_assert_eq!(matches(Prefix, &rule, &plain), matches(Prefix, &rule, &noisy));
            }
        }

        #[test]
        fn prefix_rule_matches_itself_and_its_subpaths_but_not_extensions(pieces in path_pieces()) {
            if let Ok(rule) = norm(&render(&pieces, None)) {
                prop_assert!(matches(Prefix, &rule, &rule));
                prop_assert!(matches(Prefix, "/", &rule));
                let base = rule.trim_end_matches('/');
                let subpath = format!("{base}/sub");
                prop_assert!(matches(Prefix, &rule, &subpath));
                if !base.is_empty() {
                    let extended = format!("{base}x");
                    prop_assert!(!matches(Prefix, &rule, &extended));
                }
            }
        }
    }
}
