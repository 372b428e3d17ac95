//! Header rules for forwarding: what is hop-by-hop, what the upstream is told about the client.

use std::net::IpAddr;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::HeaderMap;
use hyper::header::{self, HeaderName, HeaderValue};

/// RFC 9110 §7.6.1 hop-by-hop headers, plus `Proxy` (httpoxy) which is dropped outright.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static PROXY: HeaderName = HeaderName::from_static("proxy");

/// Remove hop-by-hop headers (and those the `Connection` header names). `Upgrade` is kept only when the
/// caller passes the request through as an upgrade.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| !(keep_upgrade && name == header::UPGRADE))
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
    headers.remove(&PROXY);
    if !keep_upgrade {
        headers.remove(header::UPGRADE);
    }
}

/// What the upstream is told about the client, as ingress-nginx does without `use-forwarded-headers`:
/// client-supplied X-Forwarded-* values are replaced, never appended to (they cannot be trusted).
pub struct ClientInfo<'a> {
    pub ip: IpAddr,
    pub tls: bool,
    pub host: &'a str,
    pub port: u16,
}

pub fn set_forwarded(headers: &mut HeaderMap, client: &ClientInfo<'_>) {
    let ip = HeaderValue::from_str(&client.ip.to_string()).ok();
    if let Some(ip) = ip {
        headers.insert(X_FORWARDED_FOR.clone(), ip.clone());
        headers.insert(X_REAL_IP.clone(), ip);
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if client.tls { "https" } else { "http" }),
    );
    if let Ok(host) = HeaderValue::from_str(client.host) {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    headers.insert(X_FORWARDED_PORT.clone(), HeaderValue::from(client.port));
    if !headers.contains_key(&X_REQUEST_ID) {
        headers.insert(X_REQUEST_ID.clone(), new_request_id());
    }
}

/// 32 hex digits like nginx's `$request_id`: a random per-process prefix and a counter — unique without a
/// syscall per request.
pub fn new_request_id() -> HeaderValue {
    static PREFIX: LazyLock<u64> = LazyLock::new(|| {
        let mut b = [0u8; 8];
        // ring's SystemRandom reads the OS generator; on failure fall back to time, still unique per process.
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos());
            b = (nanos.unwrap_or(0) as u64).to_le_bytes();
        }
        u64::from_le_bytes(b)
    });
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let id = format!(
        "{:016x}{:016x}",
        *PREFIX,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("0"))
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
            ("connection", "keep-alive, x-secret"),
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
    fn upgrade_survives_when_passing_an_upgrade_through() {
        let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert!(!h.contains_key("connection"));
    }

    #[test]
    fn forwarded_headers_replace_what_the_client_sent() {
        let mut h = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-request-id", "abc")]);
        set_forwarded(
            &mut h,
            &ClientInfo {
                ip: "192.0.2.7".parse().unwrap(),
                tls: true,
                host: "a.example",
                port: 443,
            },
        );
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
    }

    #[test]
    fn request_ids_are_unique_32_hex_digits() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.to_str().unwrap().bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
