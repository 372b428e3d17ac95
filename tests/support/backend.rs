//! A real HTTP backend for proxy tests: answers every request with a JSON echo of what it received, and
//! with [`SERVER`] in `Server`, `/internal` in `X-Accel-Redirect` (fields nginx hides from clients) and
//! `X-Backend: <name>`. `/hang` never answers (for timeouts); `/ws` accepts a WebSocket-style upgrade and
//! echoes bytes.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Deserialize)]
pub struct Echo {
    pub backend: String,
    pub method: String,
    /// Path and query as the backend received them.
    pub uri: String,
    pub headers: BTreeMap<String, String>,
    pub body_len: usize,
}

/// The backend's `Server` field.
pub const SERVER: &str = "echo-backend";

pub struct Backend {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start(name: &str) -> Backend {
    start_on(name, "127.0.0.1:0".parse().expect("addr")).await
}

pub async fn start_on(name: &str, addr: SocketAddr) -> Backend {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let name = name.to_owned();
    let app = axum::Router::new().fallback(move |req: Request| echo(name.clone(), req));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Backend { addr, task }
}

async fn echo(backend: String, mut req: Request) -> Response {
    if req.uri().path() == "/hang" {
        std::future::pending::<()>().await;
    }
    if req.uri().path() == "/ws" {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = hyper_util::rt::TokioIo::new(upgraded);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .body(Body::empty())
            .expect("101");
    }
    let method = req.method().to_string();
    let uri = req
        .uri()
        .path_and_query()
        .map(|pq| pq.to_string())
        .unwrap_or_default();
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body_len = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let json = serde_json::json!({
        "backend": backend, "method": method, "uri": uri, "headers": headers, "body_len": body_len
    });
    let mut resp = axum::Json(json).into_response();
    let fields = resp.headers_mut();
    fields.insert(header::SERVER, header::HeaderValue::from_static(SERVER));
    fields.insert(
        "x-accel-redirect",
        header::HeaderValue::from_static("/internal"),
    );
    if let Ok(name) = header::HeaderValue::from_str(&backend) {
        fields.insert("x-backend", name);
    }
    resp
}
