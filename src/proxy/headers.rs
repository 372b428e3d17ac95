//! Header rules for forwarding: what is hop-by-hop, what the upstream is told about the client.

use std::net::IpAddr;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::HeaderMap;
use hyper::header::{self, HeaderName, HeaderValue};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Remove hop-by-hop headers (and those the `Connection` header names). `Upgrade` is kept only when the
/// caller passes the request through as an upgrade.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let dropped =
        |name: &HeaderName| is_hop_by_hop(name) && !(keep_upgrade && name == header::UPGRADE);
    // Most messages carry none or one of them: find those present instead of a lookup per rule.
    if !headers.keys().any(dropped) {
        return;
    }
    // The names `Connection` lists (values are shared, not copied; names are looked up as &str, which
    // allocates nothing and ignores what is not a valid name).
    let listed: Vec<HeaderValue> = headers
        .get_all(header::CONNECTION)
        .iter()
        .cloned()
        .collect();
    for name in listed
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
    {
        if !(name.is_empty() || keep_upgrade && name.eq_ignore_ascii_case("upgrade")) {
            headers.remove(name);
        }
    }
    while let Some(name) = headers.keys().find(|name| dropped(name)).cloned() {
        headers.remove(&name);
    }
}

/// An upstream response's headers as the client gets them: without hop-by-hop fields (and the names
/// `Connection` lists), and without the fields nginx hides ([`is_hidden_from_responses`]).
pub fn strip_response(headers: &mut HeaderMap) {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3): the body was delimited by it, and a
        // proxy must not pass a Content-Length on with it.
        headers.remove(header::CONTENT_LENGTH);
    }
    strip_hop_by_hop(headers, false);
    while let Some(name) = headers
        .keys()
        .find(|name| is_hidden_from_responses(name))
        .cloned()
    {
        headers.remove(&name);
    }
}

/// Is this a response field the client never gets, whatever `Connection` says (hop-by-hop, or hidden)?
pub fn never_in_responses(name: &HeaderName) -> bool {
    is_hop_by_hop(name) || is_hidden_from_responses(name)
}

/// The fields nginx does not pass from an upstream's response (`proxy_hide_header`'s default): Date and
/// Server (the proxy's own Date is sent instead), X-Pad, and the X-Accel-* controls of nginx itself.
/// (A `match` on the name, checked per field of every response: no list built and compared per call.)
fn is_hidden_from_responses(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "date"
            | "server"
            | "x-pad"
            | "x-accel-expires"
            | "x-accel-redirect"
            | "x-accel-limit-rate"
            | "x-accel-buffering"
            | "x-accel-charset"
    )
}

/// Is this one of the names `strip_hop_by_hop` always removes? The RFC 9110 §7.6.1 hop-by-hop fields,
/// `Proxy` (httpoxy, dropped outright) and `Upgrade`. (`Connection` is among them, so the names it lists
/// only matter when this is true for some header.)
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "proxy"
            | "upgrade"
    )
}

/// What the upstream is told about the client's connection, as ingress-nginx does without
/// `use-forwarded-headers`: client-supplied X-Forwarded-* values are replaced, never appended to (they
/// cannot be trusted). Made once per connection, so a request only copies references.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    ip: HeaderValue,
    port: HeaderValue,
    tls: bool,
}

impl ClientInfo {
    /// `port`: the local port the client connected to.
    pub fn new(ip: IpAddr, port: u16, tls: bool) -> Self {
        Self {
            ip: HeaderValue::try_from(ip.to_string()).unwrap_or(HeaderValue::from_static("-")),
            port: HeaderValue::from(port),
            tls,
        }
    }
}

static HTTP: HeaderValue = HeaderValue::from_static("http");
static HTTPS: HeaderValue = HeaderValue::from_static("https");

/// The fields a forwarded request carries about its client: X-Forwarded-For/-Proto/-Host/-Port and
/// X-Real-IP replace whatever the client sent; the client's X-Request-ID is kept, else one is made.
#[derive(Debug)]
pub struct Forwarded<'a> {
    pub client: &'a ClientInfo,
    /// The Host header (or HTTP/2 `:authority`) as the client sent it.
    pub host: &'a HeaderValue,
    /// The X-Request-ID to send when the client sent none; `None`: a new one (the access log, which
    /// names it, makes it beforehand).
    pub request_id: Option<HeaderValue>,
}

/// The names of the fields that replace the client's own, in the order [`Forwarded::replacing`] gives them.
static REPLACED: [&HeaderName; 5] = [
    &X_FORWARDED_FOR,
    &X_REAL_IP,
    &X_FORWARDED_PROTO,
    &X_FORWARDED_HOST,
    &X_FORWARDED_PORT,
];

impl Forwarded<'_> {
    /// The fields that replace the client's own.
    pub fn replacing(&self) -> [(&'static HeaderName, &HeaderValue); 5] {
        let ip = &self.client.ip;
        let proto = if self.client.tls { &HTTPS } else { &HTTP };
        let values = [ip, ip, proto, self.host, &self.client.port];
        std::array::from_fn(|i| (REPLACED[i], values[i]))
    }

    /// Is this one of the client's fields that [`Self::replacing`] replaces?
    pub fn replaces(name: &HeaderName) -> bool {
        REPLACED.contains(&name)
    }

    /// Set the fields in a request's header map.
    pub fn set_on(self, headers: &mut HeaderMap) {
        // Up to six new names: grow the map once, not once per insert.
        headers.reserve(6);
        for (name, value) in self.replacing() {
            headers.insert(name.clone(), value.clone());
        }
        if !headers.contains_key(&X_REQUEST_ID) {
            let id = self.request_id.unwrap_or_else(new_request_id);
            headers.insert(X_REQUEST_ID.clone(), id);
        }
    }
}

/// 32 hex digits like nginx's `$request_id`: a random per-process prefix and a counter — unique without a
/// syscall per request.
pub fn new_request_id() -> HeaderValue {
    HeaderValue::from_bytes(&request_id_digits()).unwrap_or(HeaderValue::from_static("0"))
}

/// [`new_request_id`]'s digits, made on the stack.
pub fn request_id_digits() -> [u8; 32] {
    static PREFIX: LazyLock<[u8; 16]> = LazyLock::new(|| {
        let mut b = [0u8; 8];
        // ring's SystemRandom reads the OS generator; on failure fall back to time, still unique per process.
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos());
            b = (nanos.unwrap_or(0) as u64).to_le_bytes();
        }
        hex_digits(b)
    });
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut id = [0u8; 32];
    id[..16].copy_from_slice(&*PREFIX);
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    id[16..].copy_from_slice(&hex_digits(counter.to_be_bytes()));
    id
}

/// Lower-case hex digits of 8 bytes (the `hex` crate: std's formatter costs ~1 % of a proxied request).
fn hex_digits(bytes: [u8; 8]) -> [u8; 16] {
    let mut digits = [b'0'; 16];
    // 16 digits for 8 bytes: the length always matches.
    let _ = hex::encode_to_slice(bytes, &mut digits);
    digits
}

/// Does this HTTP/1.1 request ask for a protocol upgrade (WebSocket)?
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = headers(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("proxy", "http://evil"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn each_dropped_header_is_removed_on_its_own_too() {
        for name in ["proxy", "upgrade", "te", "keep-alive", "transfer-encoding"] {
            let mut h = headers(&[(name, "x"), ("accept", "*/*")]);
            strip_hop_by_hop(&mut h, false);
            let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
            assert_eq!(left, ["accept"], "{name}");
        }
    }

    #[test]
    fn responses_lose_the_fields_nginx_hides_and_keep_the_rest() {
        let mut h = headers(&[
            ("date", "Mon, 07 Dec 2026 23:00:00 GMT"),
            ("server", "gunicorn/23"),
            ("x-accel-redirect", "/internal/secret"),
            ("x-pad", "avoid browser bug"),
            ("keep-alive", "timeout=5"),
            ("content-type", "text/plain"),
            ("x-app", "1"),
        ]);
        strip_response(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["content-type", "x-app"]);
        let mut h = headers(&[("content-length", "5"), ("transfer-encoding", "chunked")]);
        strip_response(&mut h);
        assert!(h.is_empty(), "{h:?}");
        let mut h = headers(&[("content-length", "5")]);
        strip_response(&mut h);
        assert_eq!(h["content-length"], "5");
        for name in ["date", "server", "x-accel-charset", "te", "connection"] {
            let name = HeaderName::from_static(name);
            assert!(never_in_responses(&name), "{name}");
        }
        assert!(!never_in_responses(&header::CONTENT_TYPE));
    }

    #[test]
    fn every_hop_by_hop_and_hidden_name_is_recognised_and_no_near_miss_is() {
        let hop_by_hop = [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "proxy",
            "upgrade",
        ];
        let hidden = [
            "date",
            "server",
            "x-pad",
            "x-accel-expires",
            "x-accel-redirect",
            "x-accel-limit-rate",
            "x-accel-buffering",
            "x-accel-charset",
        ];
        let near_misses = [
            "tee",
            "dates",
            "x-accel",
            "x-accel-other",
            "proxy-x",
            "content-type",
        ];
        for name in hop_by_hop.iter().chain(&hidden).chain(&near_misses) {
            // Names as they arrive: parsed from mixed case, as hyper and the direct path make them.
            let parsed = HeaderName::from_bytes(name.to_ascii_uppercase().as_bytes()).unwrap();
            assert_eq!(is_hop_by_hop(&parsed), hop_by_hop.contains(name), "{name}");
            assert_eq!(
                is_hidden_from_responses(&parsed),
                hidden.contains(name),
                "{name}"
            );
        }
        let mut h = headers(&hidden.map(|name| (name, "1")));
        h.insert("x-app", HeaderValue::from_static("1"));
        strip_response(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-app"]);
    }

    #[test]
    fn upgrade_survives_when_passing_an_upgrade_through() {
        let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert!(!h.contains_key("connection"));
    }

    static HOST: HeaderValue = HeaderValue::from_static("a.example");

    fn forwarded(client: &ClientInfo) -> Forwarded<'_> {
        Forwarded {
            client,
            host: &HOST,
            request_id: None,
        }
    }

    #[test]
    fn forwarded_headers_replace_what_the_client_sent() {
        let mut h = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-request-id", "abc")]);
        forwarded(&ClientInfo::new("192.0.2.7".parse().unwrap(), 443, true)).set_on(&mut h);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "192.0.2.7");
        assert_eq!(h.get("x-real-ip").unwrap(), "192.0.2.7");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "a.example");
        assert_eq!(h.get("x-forwarded-port").unwrap(), "443");
        assert_eq!(
            h.get("x-request-id").unwrap(),
            "abc",
            "a client's request id is kept"
        );
        let replaced = [
            "x-forwarded-for",
            "x-real-ip",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-forwarded-port",
        ];
        for name in h.keys() {
            assert_eq!(
                Forwarded::replaces(name),
                replaced.contains(&name.as_str()),
                "{name}"
            );
        }
    }

    #[test]
    fn a_request_id_made_beforehand_is_the_one_sent() {
        let mut h = HeaderMap::new();
        let client = ClientInfo::new("192.0.2.7".parse().unwrap(), 80, false);
        let id = new_request_id();
        Forwarded {
            request_id: Some(id.clone()),
            ..forwarded(&client)
        }
        .set_on(&mut h);
        assert_eq!(h.get("x-request-id"), Some(&id));
    }

    #[test]
    fn an_ipv6_client_is_named_without_brackets() {
        let mut h = HeaderMap::new();
        forwarded(&ClientInfo::new("2001:db8::1".parse().unwrap(), 80, false)).set_on(&mut h);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "2001:db8::1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
    }

    #[test]
    fn request_ids_are_unique_32_hex_digits() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.to_str().unwrap().bytes().all(|c| c.is_ascii_hexdigit()));
        // A per-process prefix, then a counter, each as 16 zero-padded lower-case hex digits.
        let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
        assert_eq!(a[..16], b[..16]);
        assert_eq!(a, a.to_ascii_lowercase());
        let counter = |id: &str| u64::from_str_radix(&id[16..], 16).unwrap();
        assert!(counter(b) > counter(a), "{a} then {b}");
    }
}
