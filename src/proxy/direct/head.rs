//! HTTP/1.1 message heads on the direct upstream path: the request head written, the response head parsed
//! (httparse, the parser hyper uses), and how the response body is delimited (RFC 9112 §6.3). Pure
//! functions over buffers.

use bytes::{Bytes, BytesMut};
use hyper::ext::ReasonPhrase;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};

use crate::proxy::headers::{self, Forwarded, X_REQUEST_ID, request_id_digits};
use crate::proxy::screen;

/// The longest response head accepted ("upstream sent too big header" beyond, as nginx says: a 502).
pub const MAX_RESPONSE_HEAD: usize = 64 << 10;
/// Most header fields in a response head (hyper's limit).
const MAX_HEADERS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("upstream sent a response head longer than {MAX_RESPONSE_HEAD} bytes")]
    TooLarge,
    #[error("upstream sent an invalid response head: {0}")]
    Invalid(&'static str),
    #[error("upstream sent conflicting or invalid Content-Length")]
    BadContentLength,
}

/// Write the request head for `method target` with `headers` and the `forwarded` fields into `out`
/// (cleared first). The forwarded fields go straight into the head, not through the header map: no map
/// growth, no request id allocated. A POST, PUT or PATCH without a body says so with `Content-Length: 0`,
/// as hyper's client does: some servers refuse such requests without a length.
pub fn encode_request(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    forwarded: &Forwarded<'_>,
) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut has_request_id = false;
    for (name, value) in headers {
        if Forwarded::replaces(name) {
            continue;
        }
        has_request_id |= *name == X_REQUEST_ID;
        field(out, name, value.as_bytes());
    }
    for (name, value) in forwarded.replacing() {
        field(out, name, value.as_bytes());
    }
    if !has_request_id {
        match &forwarded.request_id {
            Some(id) => field(out, &X_REQUEST_ID, id.as_bytes()),
            None => field(out, &X_REQUEST_ID, &request_id_digits()),
        }
    }
    if matches!(*method, Method::POST | Method::PUT | Method::PATCH)
        && !headers.contains_key(header::CONTENT_LENGTH)
    {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn field(out: &mut Vec<u8>, name: &HeaderName, value: &[u8]) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A parsed response head. Header values share the head's bytes (no copy).
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// The fields the client gets: no hop-by-hop fields, none of those nginx hides
    /// ([`headers::never_in_responses`]), and no field a `Connection` field lists.
    pub headers: HeaderMap,
    /// The upstream closes the connection after this response (`Connection: close`, or HTTP/1.0 without
    /// keep-alive).
    pub closes: bool,
    /// Transfer-Encoding was there: is its last coding chunked?
    chunked: Option<bool>,
    /// The status line's reason when it is not the standard one: passed on, as nginx passes it (hyper
    /// writes the status line from it).
    pub reason: Option<ReasonPhrase>,
}

/// Take one complete response head off the front of `buf`: `Ok(None)` while it is incomplete.
pub fn parse_response(buf: &mut BytesMut) -> Result<Option<ResponseHead>, HeadError> {
    let Some(len) = head_len(buf) else {
        return if buf.len() > MAX_RESPONSE_HEAD {
            Err(HeadError::TooLarge)
        } else {
            Ok(None)
        };
    };
    if len > MAX_RESPONSE_HEAD {
        return Err(HeadError::TooLarge);
    }
    let head: Bytes = buf.split_to(len).freeze();
    // Left uninitialised: httparse writes the fields it finds (no 3 KiB cleared per response).
    let mut fields =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        &head,
        &mut fields,
    );
    match parsed {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HeadError::Invalid("incomplete head")),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::Invalid("too many headers")),
        Err(_) => return Err(HeadError::Invalid("not an HTTP/1.x response head")),
    }
    let code = response.code.ok_or(HeadError::Invalid("no status"))?;
    let status = StatusCode::from_u16(code).map_err(|_| HeadError::Invalid("bad status code"))?;
    let reason = response
        .reason
        .filter(|r| !r.is_empty() && Some(*r) != status.canonical_reason())
        .and_then(|r| ReasonPhrase::try_from(head.slice_ref(r.as_bytes())).ok());
    let mut headers = HeaderMap::with_capacity(response.headers.len());
    let (mut close, mut keep_alive, mut chunked) = (false, false, None);
    // A `Connection` field that lists other names: it is kept until they are removed with it, below.
    let mut lists_others = false;
    for field in response.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| HeadError::Invalid("bad header name"))?;
        if name == header::CONNECTION {
            let mut lists_more = false;
            for token in field.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                } else {
                    lists_more |= !token.is_empty();
                }
            }
            lists_others |= lists_more;
            if !lists_more {
                continue;
            }
        } else if name == header::TRANSFER_ENCODING {
            // The last coding of the last field decides (RFC 9112 §6.3).
            let last = field.value.rsplit(|&b| b == b',').map(<[u8]>::trim_ascii);
            match last.into_iter().find(|coding| !coding.is_empty()) {
                Some(coding) => chunked = Some(coding.eq_ignore_ascii_case(b"chunked")),
                None => chunked = chunked.or(Some(false)),
            }
            continue;
        } else if headers::never_in_responses(&name) {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(head.slice_ref(field.value))
            .map_err(|_| HeadError::Invalid("bad header value"))?;
        headers.append(name, value);
    }
    if lists_others {
        headers::strip_hop_by_hop(&mut headers, false);
    }
    if chunked.is_some() {
        // Transfer-Encoding overrides it (RFC 9112 §6.3), and a proxy must not pass both on.
        headers.remove(header::CONTENT_LENGTH);
    }
    let http10 = response.version == Some(0);
    Ok(Some(ResponseHead {
        status,
        headers,
        closes: if http10 { !keep_alive } else { close },
        chunked,
        reason,
    }))
}

/// Length of the head at the front of `buf` through its empty line (CRLF CRLF, or bare LFs as httparse
/// also accepts), if it is all there.
fn head_len(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[from..]) {
        let end = from + i + 1;
        match buf.get(end) {
            Some(b'\n') => return Some(end + 1),
            Some(b'\r') if buf.get(end + 1) == Some(&b'\n') => return Some(end + 2),
            Some(_) => from = end,
            None => return None,
        }
    }
    None
}

/// How the response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (0: no body at all).
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection (which then cannot be reused).
    UntilClose,
}

/// How the body of `head`, the response to a `method` request, is delimited.
pub fn framing(method: &Method, head: &ResponseHead) -> Result<Framing, HeadError> {
    let status = head.status;
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Length(0));
    }
    // Transfer-Encoding overrides Content-Length; a body not chunked last runs until close.
    match head.chunked {
        Some(true) => return Ok(Framing::Chunked),
        Some(false) => return Ok(Framing::UntilClose),
        None => {}
    }
    let mut length = None;
    for value in head.headers.get_all(header::CONTENT_LENGTH) {
        let value = value.to_str().map_err(|_| HeadError::BadContentLength)?;
        // A list of equal values is one length (RFC 9110 §8.6); any other list is an error.
        for item in value.split(',').map(str::trim) {
            let n = screen::digits(item.as_bytes()).ok_or(HeadError::BadContentLength)?;
            if length.is_some_and(|seen| seen != n) {
                return Err(HeadError::BadContentLength);
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::headers::ClientInfo;

    fn parse(raw: &[u8]) -> Result<Option<ResponseHead>, HeadError> {
        parse_response(&mut BytesMut::from(raw))
    }

    static HOST: HeaderValue = HeaderValue::from_static("a.example");

    fn encode(
        method: Method,
        target: &str,
        headers: &HeaderMap,
        id: Option<&'static str>,
    ) -> String {
        let client = ClientInfo::new([192, 0, 2, 7].into(), 8443, true);
        let forwarded = Forwarded {
            client: &client,
            host: &HOST,
            request_id: id.map(HeaderValue::from_static),
        };
        let mut out = vec![b'x'; 3];
        encode_request(&mut out, &method, target, headers, &forwarded);
        String::from_utf8(out).expect("ASCII")
    }

    const FORWARDED: &str = "x-forwarded-for: 192.0.2.7\r\nx-real-ip: 192.0.2.7\r\n\
        x-forwarded-proto: https\r\nx-forwarded-host: a.example\r\nx-forwarded-port: 8443\r\n";

    #[test]
    fn a_request_head_is_the_method_target_headers_and_forwarded_fields() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HOST.clone());
        headers.append("x-b", HeaderValue::from_static("1"));
        headers.append("x-b", HeaderValue::from_static("2"));
        headers.append("x-request-id", HeaderValue::from_static("abc"));
        assert_eq!(
            encode(Method::GET, "/p?q=1", &headers, Some("unused")),
            format!(
                "GET /p?q=1 HTTP/1.1\r\nhost: a.example\r\nx-b: 1\r\nx-b: 2\r\nx-request-id: abc\r\n{FORWARDED}\r\n"
            )
        );
        assert_eq!(
            encode(Method::POST, "/", &HeaderMap::new(), Some("id1")),
            format!("POST / HTTP/1.1\r\n{FORWARDED}x-request-id: id1\r\ncontent-length: 0\r\n\r\n")
        );
    }

    #[test]
    fn the_clients_forwarded_fields_are_replaced_and_a_request_id_is_made() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        headers.append("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        headers.append("x-forwarded-proto", HeaderValue::from_static("gopher"));
        let head = encode(Method::GET, "/", &headers, None);
        assert!(
            !head.contains("6.6.6.6") && !head.contains("gopher"),
            "{head}"
        );
        let (start, id) = head.split_once("x-request-id: ").expect("an id");
        assert_eq!(start, format!("GET / HTTP/1.1\r\n{FORWARDED}"));
        let id = id.strip_suffix("\r\n\r\n").expect("head end");
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
    }

    #[test]
    fn a_response_head_is_taken_off_the_buffer_and_the_body_stays() {
        let mut buf =
            BytesMut::from(&b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok"[..]);
        let head = parse_response(&mut buf).expect("valid").expect("complete");
        assert_eq!(head.status, StatusCode::CREATED);
        assert!(!head.closes);
        assert_eq!(head.headers["x-a"], "b");
        assert_eq!(head.headers[header::CONTENT_LENGTH], "2");
        assert_eq!(&buf[..], b"ok");
    }

    #[test]
    fn a_reason_other_than_the_standard_one_is_kept() {
        let reason = |raw: &str| parsed(raw).reason.map(|r| r.as_bytes().to_vec());
        assert_eq!(
            reason("HTTP/1.1 200 Fine by me\r\n"),
            Some(b"Fine by me".to_vec())
        );
        assert_eq!(reason("HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(reason("HTTP/1.1 404 \r\n"), None);
    }

    #[test]
    fn an_incomplete_head_waits_and_an_endless_one_is_refused() {
        assert!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Le")
                .expect("valid")
                .is_none()
        );
        assert!(parse(b"HTTP/1.1 200 OK\r\n").expect("valid").is_none());
        let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
        endless.extend(std::iter::repeat_n(b'a', MAX_RESPONSE_HEAD));
        assert_eq!(parse(&endless).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn bare_line_feeds_end_a_head_too() {
        let head = parse(b"HTTP/1.0 200 OK\nA: 1\n\nbody")
            .expect("valid")
            .expect("complete");
        assert!(head.closes, "HTTP/1.0 without keep-alive");
        assert_eq!(head.headers["a"], "1");
    }

    #[test]
    fn garbage_is_not_a_response() {
        assert!(matches!(
            parse(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(HeadError::Invalid(_))
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 20 OK\r\n\r\n"),
            Err(HeadError::Invalid(_))
        ));
    }

    /// The framing of a raw response head, the answer to a `method` request.
    fn framing_of(method: Method, raw: &str) -> Result<Framing, HeadError> {
        let head = parse(format!("{raw}\r\n").as_bytes())
            .expect("valid")
            .expect("complete");
        framing(&method, &head)
    }

    #[test]
    fn the_body_is_delimited_as_rfc_9112_says() {
        use Method as M;
        const OK: &str = "HTTP/1.1 200 OK\r\n";
        let cases = [
            (M::GET, "content-length: 12\r\n", Ok(Framing::Length(12))),
            (M::GET, "content-length: 3, 3\r\n", Ok(Framing::Length(3))),
            (
                M::GET,
                "content-length: 3\r\ncontent-length: 3\r\n",
                Ok(Framing::Length(3)),
            ),
            (
                M::GET,
                "content-length: 3, 4\r\n",
                Err(HeadError::BadContentLength),
            ),
            (
                M::GET,
                "content-length: -1\r\n",
                Err(HeadError::BadContentLength),
            ),
            (
                M::GET,
                "content-length: +1\r\n",
                Err(HeadError::BadContentLength),
            ),
            (
                M::GET,
                "transfer-encoding: chunked\r\n",
                Ok(Framing::Chunked),
            ),
            (
                M::GET,
                "transfer-encoding: gzip, Chunked\r\n",
                Ok(Framing::Chunked),
            ),
            (
                M::GET,
                "transfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n",
                Ok(Framing::Chunked),
            ),
            (
                M::GET,
                "transfer-encoding: chunked\r\ncontent-length: 5\r\n",
                Ok(Framing::Chunked),
            ),
            (
                M::GET,
                "transfer-encoding: chunked, gzip\r\n",
                Ok(Framing::UntilClose),
            ),
            (M::GET, "", Ok(Framing::UntilClose)),
            (M::HEAD, "content-length: 12\r\n", Ok(Framing::Length(0))),
        ];
        for (method, fields, expected) in cases {
            assert_eq!(
                framing_of(method.clone(), &format!("{OK}{fields}")),
                expected,
                "{method} {fields:?}"
            );
        }
        for status in ["204 No Content", "304 Not Modified"] {
            let raw = format!("HTTP/1.1 {status}\r\ncontent-length: 9\r\n");
            assert_eq!(framing_of(M::GET, &raw), Ok(Framing::Length(0)), "{status}");
        }
    }

    fn parsed(raw: &str) -> ResponseHead {
        parse(format!("{raw}\r\n").as_bytes())
            .expect("valid")
            .expect("complete")
    }

    #[test]
    fn http_1_1_keeps_alive_unless_closed_and_1_0_only_when_asked() {
        assert!(!parsed("HTTP/1.1 200 OK\r\n").closes);
        assert!(parsed("HTTP/1.1 200 OK\r\nConnection: Close\r\n").closes);
        assert!(parsed("HTTP/1.1 200 OK\r\nConnection: x\r\nConnection: close\r\n").closes);
        assert!(parsed("HTTP/1.0 200 OK\r\n").closes);
        assert!(!parsed("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n").closes);
    }

    #[test]
    fn hop_by_hop_and_hidden_fields_never_reach_the_client() {
        let head = parsed(
            "HTTP/1.1 200 OK\r\nDate: x\r\nServer: y\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
             Transfer-Encoding: chunked\r\nX-App: 1\r\n",
        );
        let left: Vec<&str> = head.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-app"]);
        // Transfer-Encoding wins over Content-Length, which is not passed on with it.
        let head = parsed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n");
        assert!(!head.headers.contains_key(header::CONTENT_LENGTH));
        // The fields a Connection field names go, and the Connection field with them.
        let head = parsed("HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: 1\r\nX-App: 1\r\n");
        let left: Vec<&str> = head.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-app"]);
    }
}
