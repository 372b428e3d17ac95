//! What one request did, recorded when its response body ends: the route's request counter and latency,
//! and the access log line (target `certgate::access`, one per request, like nginx's access log).
//!
//! The response body is wrapped in [`Observed`], which counts the bytes sent and records once: when the
//! body's last frame is polled, or when it is dropped (client gone, HEAD, upgrade), whichever comes first.
//!
//! SECURITY: the access log names the method, host, path *without* the query string, status, body bytes,
//! duration, upstream, request id and Ingress — never the query (tokens travel there), headers
//! (Authorization, cookies) or bodies.

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::HeaderValue;
use hyper::{Method, Uri};

use crate::metrics::proxy::RouteHandles;
use crate::proxy::body::{BoxError, ProxyBody};
use crate::routing::table::{Target, normalize_host};

/// The tracing target of access log lines (filter with `RUST_LOG=certgate::access=off`, or turn them off
/// with `--access-log=false`).
pub const ACCESS_LOG_TARGET: &str = "certgate::access";

/// One request, as the access log and the metrics describe it.
#[derive(Debug)]
pub struct Exchange {
    pub started: Instant,
    /// `None` for a request refused before hyper parsed it (a malformed or oversized head).
    pub method: Option<Method>,
    /// Only its path is ever logged.
    pub uri: Option<Uri>,
    /// The Host header as sent (normalised for the log).
    pub host: Option<HeaderValue>,
    pub status: u16,
    /// The Ingress that served the request, if any.
    pub target: Option<Arc<Target>>,
    pub upstream: Option<SocketAddr>,
    pub request_id: Option<HeaderValue>,
    pub route: Arc<RouteHandles>,
    pub access_log: bool,
}

impl Exchange {
    fn record(&self, body_bytes: u64) {
        let elapsed = self.started.elapsed();
        self.route.request(self.status, elapsed.as_secs_f64());
        if !self.access_log {
            return;
        }
        let host = self
            .host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .map(normalize_host);
        tracing::info!(
            target: ACCESS_LOG_TARGET,
            method = self.method.as_ref().map_or("-", Method::as_str),
            host = host.as_deref().unwrap_or("-"),
            path = self.uri.as_ref().map_or("-", Uri::path),
            status = self.status,
            body_bytes_sent = body_bytes,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            upstream = %OrDash(self.upstream.as_ref()),
            request_id = self.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-"),
            ingress = %OrDash(self.target.as_ref().map(|t| &t.ingress)),
            "request"
        );
    }
}

/// `-` for a missing value, as nginx logs one.
struct OrDash<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// A response body that records its exchange once, at its end.
pub struct Observed {
    inner: ProxyBody,
    bytes: u64,
    /// `None` once recorded.
    exchange: Option<Exchange>,
}

impl Observed {
    pub fn new(inner: ProxyBody, exchange: Exchange) -> Self {
        Self {
            inner,
            bytes: 0,
            exchange: Some(exchange),
        }
    }

    fn finish(&mut self) {
        if let Some(exchange) = self.exchange.take() {
            exchange.record(self.bytes);
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Body for Observed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
                // hyper stops polling a body that says it has ended: record now, not at some later drop.
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(Some(Err(_)) | None) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
