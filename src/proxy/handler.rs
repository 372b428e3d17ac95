//! One request: normalise, route, apply the route's rules (redirect, auth, body limit), forward, answer;
//! then hand what happened to `observe`, which records it when the response body ends.
//!
//! Status codes, as ingress-nginx gives them: 400 bad path or host, 404 no route, 308 HTTPS redirect,
//! 401 auth, 413 body too large, 503 no backend / broken configuration, 502 upstream failure, 504 timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use tracing::{debug, warn};

use crate::auth::basic;
use crate::metrics::proxy::{CATCH_ALL_HOST, UpstreamError};
use crate::proxy::Shared;
use crate::proxy::body::{self, ProxyBody};
use crate::proxy::headers::{self, ClientInfo, Forwarded, X_REQUEST_ID};
use crate::proxy::observe::{Exchange, Observed};
use crate::routing::path;
use crate::routing::table::{Backend, Policy, Resolved, Target, normalize_host};

/// ACME HTTP-01 paths: never redirected, never behind auth.
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The connection a request arrived on.
#[derive(Debug, Clone)]
pub struct Conn {
    pub remote: SocketAddr,
    pub tls: bool,
    /// Its X-Forwarded-* values, made once.
    pub forwarded: ClientInfo,
}

impl Conn {
    pub fn new(remote: SocketAddr, local_port: u16, tls: bool) -> Self {
        Self {
            remote,
            tls,
            forwarded: ClientInfo::new(remote.ip(), local_port, tls),
        }
    }
}

/// What serving a request found out, for its metrics and access log line.
#[derive(Default)]
struct Seen {
    /// The matched server's configured name.
    server: Option<Arc<str>>,
    /// The Ingress rule or default backend that served it.
    target: Option<Arc<Target>>,
    upstream: Option<SocketAddr>,
    request_id: Option<HeaderValue>,
    /// Seconds until the upstream's response head.
    upstream_header: Option<f64>,
    upstream_error: Option<UpstreamError>,
}

pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Response<Observed> {
    let started = Instant::now();
    // Kept for the access log only (a standard method is a tag; a Uri is reference-counted): without the
    // log, nothing holds on to the client's read buffer once the request has been forwarded.
    let log = shared.access_log;
    let method = log.then(|| req.method().clone());
    let uri = log.then(|| req.uri().clone());
    let host = request_host(&req);
    let mut seen = Seen::default();
    let resp = serve(&shared, &conn, req, host.as_ref(), &mut seen).await;

    let server = seen.server.as_deref().filter(|n| !n.is_empty());
    let (namespace, ingress) = seen
        .target
        .as_ref()
        .map_or(("", ""), |t| (&*t.ingress.namespace, &*t.ingress.name));
    let route = shared
        .metrics
        .route(namespace, ingress, server.unwrap_or(CATCH_ALL_HOST));
    if let Some(seconds) = seen.upstream_header {
        route.upstream_header(seconds);
    }
    if let Some(kind) = seen.upstream_error {
        route.upstream_error(kind);
    }
    let exchange = Exchange {
        started,
        method,
        uri,
        host: host.filter(|_| log),
        status: resp.status().as_u16(),
        target: seen.target,
        upstream: seen.upstream,
        request_id: seen.request_id,
        route,
        access_log: shared.access_log,
    };
    resp.map(|body| Observed::new(body, exchange))
}

/// The answer to a request whose head was refused below hyper (`client_io`): no route, no upstream; its
/// method, host and path are unknown (hyper parsed a stand-in).
pub fn refused(shared: &Shared, resp: Response<ProxyBody>) -> Response<Observed> {
    let exchange = Exchange {
        started: Instant::now(),
        method: None,
        uri: None,
        host: None,
        status: resp.status().as_u16(),
        target: None,
        upstream: None,
        request_id: None,
        route: shared.metrics.route("", "", CATCH_ALL_HOST),
        access_log: shared.access_log,
    };
    resp.map(|body| Observed::new(body, exchange))
}

async fn serve(
    shared: &Shared,
    conn: &Conn,
    req: Request<Incoming>,
    host_header: Option<&HeaderValue>,
    seen: &mut Seen,
) -> Response<ProxyBody> {
    if shared.access_log {
        seen.request_id = req.headers().get(&X_REQUEST_ID).cloned();
    }
    // `request_host` only returns visible-ASCII values.
    let Some((host_header, raw_host)) = host_header.and_then(|h| Some((h, h.to_str().ok()?)))
    else {
        return status(StatusCode::BAD_REQUEST, "missing Host");
    };
    let host = normalize_host(raw_host);
    let routes = shared.routes.load_full();
    let server = routes.host(&host);
    seen.server = Some(server.name.clone());
    // A cheap (reference-counted) copy, so the normalised path can borrow from it while `req` moves on.
    let uri = req.uri().clone();
    let normalized = match path::normalize(uri.path()) {
        Ok(p) => p,
        Err(e) => {
            debug!(error = %e, "bad request path");
            return status(StatusCode::BAD_REQUEST, "bad request path");
        }
    };
    if normalized.starts_with(ACME_CHALLENGE_PREFIX)
        && let Some(key_authorization) = shared.http01.answer(&host, &normalized)
    {
        // Exactly the key authorization, no trailing newline (RFC 8555 §8.3).
        let mut resp = Response::new(body::text(key_authorization));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return resp;
    }
    let (target, route, host_rules) = match server.resolve(&normalized) {
        Resolved::Route { route, host } => (&route.target, Some(route), host),
        Resolved::DefaultBackend { target, host } => (target, None, host),
        Resolved::NotFound { .. } => return status(StatusCode::NOT_FOUND, "404 Not Found"),
    };
    seen.target = Some(target.clone());
    let policy = match &target.policy {
        Ok(policy) => policy,
        Err(reason) => {
            // Reported once when the configuration was built; per request only at debug level.
            debug!(ingress = %target.ingress, %reason, "path not served: invalid annotation");
            return status(StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable");
        }
    };
    let acme = normalized.starts_with(ACME_CHALLENGE_PREFIX);

    if !acme && !conn.tls && (policy.force_ssl_redirect || (policy.ssl_redirect && host_rules.tls))
    {
        return redirect_to_https(shared, &host, req.uri(), policy);
    }
    let mut req = req;
    if !acme && let Some(denied) = check_auth(&mut req, target, policy) {
        return denied;
    }
    let upstream_path = match route.and_then(|r| r.rewrite(&normalized)) {
        Some(rewritten) => std::borrow::Cow::Owned(rewritten),
        None => normalized,
    };
    let mut resp = forward(
        shared,
        conn,
        req,
        target,
        policy,
        host_header,
        &upstream_path,
        seen,
    )
    .await;
    if conn.tls
        && host_rules.tls
        && let Some(hsts) = &shared.hsts
    {
        resp.headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    resp
}

/// Host header (HTTP/1.1) or `:authority` (HTTP/2, absolute-form); `None` when missing, empty or not
/// visible ASCII. The header's value is shared with the request, not copied.
fn request_host(req: &Request<Incoming>) -> Option<HeaderValue> {
    let host = match req.uri().authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok()?,
        None => req.headers().get(header::HOST)?.clone(),
    };
    (host.to_str().is_ok_and(|h| !h.is_empty())).then_some(host)
}

/// ingress-nginx: 308 to `https://host/uri`, dropping one trailing slash unless `preserve-trailing-slash`.
fn redirect_to_https(
    shared: &Shared,
    host: &str,
    uri: &Uri,
    policy: &Policy,
) -> Response<ProxyBody> {
    let mut request_uri = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    if !policy.preserve_trailing_slash {
        request_uri = request_uri.strip_suffix('/').unwrap_or(request_uri);
    }
    let port = match shared.https_port() {
        443 => String::new(),
        p => format!(":{p}"),
    };
    let location = format!("https://{host}{port}{request_uri}");
    let mut resp = status(StatusCode::PERMANENT_REDIRECT, "308 Permanent Redirect");
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// `None` when the request may pass; the Authorization header is then removed (never forwarded).
fn check_auth(
    req: &mut Request<Incoming>,
    target: &Target,
    policy: &Policy,
) -> Option<Response<ProxyBody>> {
    let auth = policy.auth.as_ref()?;
    let users = match &auth.users {
        Ok(users) => users,
        Err(reason) => {
            // SECURITY: a broken auth Secret closes the paths; it never opens them.
            debug!(ingress = %target.ingress, %reason, "basic auth unavailable");
            return Some(status(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Unavailable",
            ));
        }
    };
    let credentials = req.headers_mut().remove(header::AUTHORIZATION);
    let ok = credentials
        .as_ref()
        .and_then(|v| basic::parse_authorization(v.as_bytes()))
        .is_some_and(|(user, password)| users.verify(&user, &password));
    if ok {
        return None;
    }
    let mut resp = status(StatusCode::UNAUTHORIZED, "401 Authorization Required");
    if let Ok(v) = HeaderValue::from_str(&basic::challenge(&auth.realm)) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    Some(resp)
}

#[allow(clippy::too_many_arguments)] // one call site; each is a distinct input of the forwarded request
async fn forward(
    shared: &Shared,
    conn: &Conn,
    mut req: Request<Incoming>,
    target: &Target,
    policy: &Policy,
    host_header: &HeaderValue,
    upstream_path: &str,
    seen: &mut Seen,
) -> Response<ProxyBody> {
    let addr = match upstream_addr(&target.backend, shared.allow_loopback()).await {
        Ok(addr) => addr,
        Err((code, kind, reason)) => {
            warn!(ingress = %target.ingress, %reason, "no upstream");
            seen.upstream_error = Some(kind);
            return status(code, code.canonical_reason().unwrap_or(""));
        }
    };
    seen.upstream = Some(addr);
    if let Some(limit) = policy.body_limit
        && content_length(&req).is_some_and(|len| len > limit)
    {
        discard_body(req.into_body()).await;
        return status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "413 Request Entity Too Large",
        );
    }

    let upgrade = req.version() == Version::HTTP_11 && headers::is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, incoming) = req.into_parts();
    parts.uri = match upstream_uri(&parts.uri, upstream_path) {
        Some(uri) => uri,
        None => return status(StatusCode::BAD_REQUEST, "bad request path"),
    };
    // HTTP/1.x heads were screened below hyper: exactly one Host header.
    let one_host = parts.version < Version::HTTP_2;
    parts.version = Version::HTTP_11;
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    if upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    // An HTTP/1.1 Host header is already there and kept; an absolute-form target or HTTP/2 `:authority`
    // names the host instead, and replaces whatever Host headers came with it.
    if !(one_host && parts.headers.get(header::HOST) == Some(host_header)) {
        parts.headers.insert(header::HOST, host_header.clone());
    }
    // The access log names the request id sent upstream: the client's, or one made here for it.
    let request_id = shared.access_log.then(|| {
        let id = parts.headers.get(&X_REQUEST_ID).cloned();
        id.unwrap_or_else(headers::new_request_id)
    });
    seen.request_id.clone_from(&request_id);
    let forwarded = Forwarded {
        client: &conn.forwarded,
        host: host_header,
        request_id,
    };
    let body = if hyper::body::Body::is_end_stream(&incoming) {
        // No body (most requests): nothing to time or limit, and no allocation.
        body::empty()
    } else {
        let incoming = body::ClientBody::new(incoming, shared.client.body_timeout);
        match policy.body_limit {
            Some(limit) => body::stream(Limited::new(
                incoming,
                usize::try_from(limit).unwrap_or(usize::MAX),
            )),
            None => body::stream(incoming),
        }
    };

    let sent = Instant::now();
    let mut resp = match shared
        .upstream
        .send(Request::from_parts(parts, body), forwarded, addr, policy)
        .await
    {
        Ok(resp) => resp,
        Err(e) => {
            warn!(ingress = %target.ingress, upstream = %addr, error = %e, "upstream request failed");
            seen.upstream_error = e.upstream_kind();
            let code = e.status();
            let mut resp = status(code, code.canonical_reason().unwrap_or(""));
            if e.closes_client_connection() {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return resp;
        }
    };
    seen.upstream_header = Some(sent.elapsed().as_secs_f64());

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            if let (Ok(client), Ok(upstream)) = (client_upgrade.await, upstream_upgrade.await) {
                let _ = tokio::io::copy_bidirectional(
                    &mut TokioIo::new(client),
                    &mut TokioIo::new(upstream),
                )
                .await;
            }
        });
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, body::empty());
    }
    resp
}

/// The request target sent upstream, in origin form: the (normalised or rewritten) path and the client's
/// query. The client's own when it is already that (no copy).
fn upstream_uri(client: &Uri, upstream_path: &str) -> Option<Uri> {
    let path_and_query = client.path_and_query()?;
    if path_and_query.path() == upstream_path {
        return Some(Uri::from(path_and_query.clone()));
    }
    let target = match path_and_query.query() {
        Some(query) => format!("{upstream_path}?{query}"),
        None => upstream_path.to_owned(),
    };
    Uri::try_from(target).ok()
}

async fn upstream_addr(
    backend: &Backend,
    allow_loopback: bool,
) -> Result<SocketAddr, (StatusCode, UpstreamError, String)> {
    match backend {
        Backend::Endpoints { service, .. } => backend.next_endpoint().ok_or_else(|| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                UpstreamError::NoEndpoint,
                format!("Service {service} has no ready endpoints"),
            )
        }),
        Backend::ExternalName {
            service,
            host,
            port,
        } => {
            let resolved = tokio::net::lookup_host((host.as_str(), *port)).await;
            let addr = resolved
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| {
                    (
                        StatusCode::BAD_GATEWAY,
                        UpstreamError::Resolve,
                        format!("ExternalName {host} of Service {service} does not resolve"),
                    )
                })?;
            if addr.ip().is_loopback() && !allow_loopback {
                return Err((
                    StatusCode::BAD_GATEWAY,
                    UpstreamError::Resolve,
                    format!(
                        "ExternalName {host} of Service {service} resolves to loopback; refused"
                    ),
                ));
            }
            Ok(addr)
        }
        Backend::Unavailable(reason) => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            UpstreamError::NoEndpoint,
            reason.clone(),
        )),
    }
}

/// Read and drop (a bounded part of) a body we refuse, before answering: a client still sending would
/// otherwise see its connection reset instead of the answer (nginx's lingering close does the same).
async fn discard_body(mut body: Incoming) {
    const MAX_BYTES: usize = 16 << 20;
    const MAX_TIME: std::time::Duration = std::time::Duration::from_secs(5);
    let drain = async {
        let mut seen = 0;
        while seen < MAX_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(MAX_TIME, drain).await;
}

fn content_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

pub fn status(code: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(body::text(format!("{text}\n")));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
