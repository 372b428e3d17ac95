//! The header syntax of HTTP basic authentication (RFC 7617): reading `Authorization: Basic …` and writing
//! `WWW-Authenticate: Basic realm="…"`. Owns no credentials and never logs what it parses.

use base64::Engine as _;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// The realm ingress-nginx uses when `auth-realm` is absent: its template renders
/// `auth_basic {{ $location.BasicDigestAuth.Realm | quote }}` with the annotation's value, which is the empty
/// string when unset, so nginx answers `WWW-Authenticate: Basic realm=""`.
pub const DEFAULT_REALM: &str = "";

/// Standard alphabet; padding optional like nginx's decoder (some clients omit it), trailing bits strict.
const CREDENTIALS: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Parse an `Authorization: Basic base64(user:password)` header value. Scheme case-insensitive; None when
/// missing/malformed/not UTF-8/no colon. The password may contain ':' (split at the first colon).
pub fn parse_authorization(value: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(value).ok()?;
    let value = value.trim_matches([' ', '\t']);
    let (scheme, token) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let token = token.trim_start_matches([' ', '\t']);
    if token.is_empty() {
        return None;
    }
    let decoded = CREDENTIALS.decode(token).ok()?;
    let credentials = String::from_utf8(decoded).ok()?;
    let (user, password) = credentials.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The `WWW-Authenticate` value for a realm: `Basic realm="…"`, with '"' and '\\' in the realm escaped.
///
/// ingress-nginx's realm when `auth-realm` is absent is the empty string ([`DEFAULT_REALM`]).
/// SECURITY: control characters (CR, LF, NUL, …; tab is kept) are replaced by a space so an annotation can
/// never split the header; the result is always valid for `HeaderValue::from_bytes` (non-ASCII realms pass
/// through as UTF-8 bytes, as nginx sends them).
pub fn challenge(realm: &str) -> String {
    let mut out = String::with_capacity(realm.len() + 15);
    out.push_str("Basic realm=\"");
    for c in realm.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push(c),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(credentials: &str) -> Vec<u8> {
        let token = base64::engine::general_purpose::STANDARD.encode(credentials);
        format!("Basic {token}").into_bytes()
    }

    fn pair(user: &str, password: &str) -> Option<(String, String)> {
        Some((user.to_owned(), password.to_owned()))
    }

    #[test]
    fn parses_user_and_password() {
        assert_eq!(
            parse_authorization(&header("alice:open sesame")),
            pair("alice", "open sesame")
        );
    }

    #[test]
    fn parses_rfc7617_example() {
        assert_eq!(
            parse_authorization(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            pair("Aladdin", "open sesame")
        );
    }

    #[test]
    fn scheme_is_case_insensitive() {
        for scheme in ["basic", "BASIC", "bAsIc"] {
            let value = format!("{scheme} QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
            assert_eq!(
                parse_authorization(value.as_bytes()),
                pair("Aladdin", "open sesame"),
                "{scheme}"
            );
        }
    }

    #[test]
    fn password_keeps_colons_after_the_first() {
        assert_eq!(
            parse_authorization(&header("bob:pa:ss:word")),
            pair("bob", "pa:ss:word")
        );
    }

    #[test]
    fn empty_user_and_empty_password_are_parsed() {
        assert_eq!(parse_authorization(&header(":")), pair("", ""));
        assert_eq!(parse_authorization(&header("carol:")), pair("carol", ""));
    }

    #[test]
    fn utf8_credentials_are_parsed() {
        assert_eq!(
            parse_authorization(&header("jürgen:pa:ss wörd")),
            pair("jürgen", "pa:ss wörd")
        );
    }

    #[test]
    fn extra_whitespace_around_the_token_is_accepted() {
        assert_eq!(
            parse_authorization(b"  Basic    QWxhZGRpbjpvcGVuIHNlc2FtZQ==  "),
            pair("Aladdin", "open sesame")
        );
        assert_eq!(
            parse_authorization(b"Basic\tQWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            pair("Aladdin", "open sesame")
        );
    }

    #[test]
    fn missing_padding_is_accepted() {
        assert_eq!(
            parse_authorization(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ"),
            pair("Aladdin", "open sesame")
        );
    }

    #[test]
    fn credentials_without_colon_are_rejected() {
        assert_eq!(parse_authorization(&header("alice")), None);
    }

    #[test]
    fn other_schemes_are_rejected() {
        assert_eq!(
            parse_authorization(b"Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            None
        );
        assert_eq!(parse_authorization(b"Digest username=\"a\""), None);
        assert_eq!(
            parse_authorization(b"BasicQWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            None
        );
    }

    #[test]
    fn missing_or_empty_values_are_rejected() {
        assert_eq!(parse_authorization(b""), None);
        assert_eq!(parse_authorization(b"Basic"), None);
        assert_eq!(parse_authorization(b"Basic "), None);
        assert_eq!(parse_authorization(b"   "), None);
    }

    #[test]
    fn invalid_base64_is_rejected() {
        assert_eq!(parse_authorization(b"Basic !!!!"), None);
        assert_eq!(
            parse_authorization(b"Basic QWxh ZGRpbjpvcGVuIHNlc2FtZQ=="),
            None
        );
        assert_eq!(
            parse_authorization(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==="),
            None
        );
        assert_eq!(parse_authorization(b"Basic Q"), None);
    }

    #[test]
    fn non_utf8_header_is_rejected() {
        assert_eq!(parse_authorization(b"Basic \xff\xfe"), None);
    }

    #[test]
    fn non_utf8_credentials_are_rejected() {
        // base64 of b"caf\xe9:x" (Latin-1, as some old clients send it).
        let token = base64::engine::general_purpose::STANDARD.encode(b"caf\xe9:x");
        assert_eq!(
            parse_authorization(format!("Basic {token}").as_bytes()),
            None
        );
    }

    #[test]
    fn challenge_quotes_the_realm() {
        assert_eq!(
            challenge("Authentication Required - foo"),
            r#"Basic realm="Authentication Required - foo""#
        );
    }

    #[test]
    fn default_realm_is_empty_like_ingress_nginx() {
        assert_eq!(challenge(DEFAULT_REALM), r#"Basic realm="""#);
    }

    #[test]
    fn challenge_escapes_quotes_and_backslashes() {
        assert_eq!(challenge(r#"a "b" \c"#), r#"Basic realm="a \"b\" \\c""#);
    }

    #[test]
    fn challenge_cannot_split_the_header() {
        let value = challenge("evil\r\nSet-Cookie: x=1\0");
        assert_eq!(value, r#"Basic realm="evil  Set-Cookie: x=1 ""#);
        assert!(hyper::header::HeaderValue::from_bytes(value.as_bytes()).is_ok());
    }

    #[test]
    fn challenge_keeps_non_ascii_realm_as_a_valid_header_value() {
        let value = challenge("Zugang für Mitarbeiter");
        assert_eq!(value, "Basic realm=\"Zugang für Mitarbeiter\"");
        assert!(hyper::header::HeaderValue::from_bytes(value.as_bytes()).is_ok());
    }
}
