//! Sending a request to an upstream over pooled keep-alive HTTP/1.1 connections, and classifying failures
//! by where they came from (they decide the status: 502, 504 or 413).

use std::error::Error as _;
use std::time::Duration;

use http_body_util::LengthLimitError;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::proxy::body::ProxyBody;
use crate::routing::table::DEFAULT_CONNECT_TIMEOUT;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("upstream connect failed: {0}")]
    Connect(String),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("request body larger than the limit")]
    BodyTooLarge,
    #[error("upstream failed: {0}")]
    Upstream(String),
}

impl ForwardError {
    pub fn status(&self) -> hyper::StatusCode {
        use hyper::StatusCode;
        match self {
            Self::Connect(_) | Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Upstream {
    client: Client<HttpConnector, ProxyBody>,
}

impl Default for Upstream {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstream {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(DEFAULT_CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            // The proxy sets Host itself: the client's original Host, not the endpoint address.
            .set_host(false)
            .build(connector);
        Self { client }
    }

    /// Send and wait for the response head at most `read_timeout`; the body then streams.
    pub async fn send(
        &self,
        req: Request<ProxyBody>,
        read_timeout: Duration,
    ) -> Result<Response<Incoming>, ForwardError> {
        match tokio::time::timeout(read_timeout, self.client.request(req)).await {
            Err(_) => Err(ForwardError::Timeout(read_timeout)),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(classify(&e)),
        }
    }
}

fn classify(e: &hyper_util::client::legacy::Error) -> ForwardError {
    let mut source = e.source();
    while let Some(s) = source {
        if s.is::<LengthLimitError>() {
            return ForwardError::BodyTooLarge;
        }
        source = s.source();
    }
    let detail = error_chain(e);
    if e.is_connect() {
        ForwardError::Connect(detail)
    } else {
        ForwardError::Upstream(detail)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
