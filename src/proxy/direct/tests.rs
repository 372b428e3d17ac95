//! The direct path against raw HTTP/1.1 upstreams on real sockets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use http_body_util::BodyExt;
use hyper::body::Body;
use hyper::header::HeaderValue;
use hyper::{Method, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::proxy::headers::ClientInfo;

const SECOND: Duration = Duration::from_secs(1);
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// An upstream that answers the n-th request head on a connection with `answers[n]`, then closes the
/// connection after the last. Counts the connections it accepted, and records each head it read.
struct Upstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
}

async fn upstream(answers: &'static [&'static [u8]]) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (count, seen) = (connections.clone(), heads.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                let mut answers = answers.iter();
                while stream.read(&mut byte).await.unwrap_or(0) == 1 {
                    head.push(byte[0]);
                    if head.ends_with(b"\r\n\r\n") {
                        seen.lock()
                            .expect("heads")
                            .push(String::from_utf8_lossy(&head).into_owned());
                        head.clear();
                        let Some(answer) = answers.next() else { return };
                        if stream.write_all(answer).await.is_err() || answers.len() == 0 {
                            return;
                        }
                    }
                }
            });
        }
    });
    Upstream {
        addr,
        connections,
        heads,
    }
}

fn policy() -> Policy {
    Policy {
        connect_timeout: SECOND,
        send_timeout: SECOND,
        read_timeout: SECOND,
        ..Policy::default()
    }
}

fn parts(method: Method, target: &str) -> request::Parts {
    Request::builder()
        .method(method)
        .uri(target)
        .header("host", "a.example")
        .body(())
        .expect("request")
        .into_parts()
        .0
}

static CLIENT: LazyLock<ClientInfo> =
    LazyLock::new(|| ClientInfo::new([192, 0, 2, 7].into(), 80, false));
static HOST: HeaderValue = HeaderValue::from_static("a.example");

fn forwarded() -> Forwarded<'static> {
    Forwarded {
        client: &CLIENT,
        host: &HOST,
        request_id: Some(HeaderValue::from_static("id")),
    }
}

/// A request for `/` whose response head must come.
async fn send(pool: &Pool<DirectConn>, method: Method, addr: SocketAddr) -> Response<DirectBody> {
    exchange(pool, &parts(method, "/"), &forwarded(), addr, &policy())
        .await
        .expect("head")
}

async fn get(pool: &Pool<DirectConn>, addr: SocketAddr) -> Result<(u16, Vec<u8>), ForwardError> {
    let resp = exchange(
        pool,
        &parts(Method::GET, "/p?q=1"),
        &forwarded(),
        addr,
        &policy(),
    )
    .await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Ok((status, body.to_vec()))
}

/// Two GETs in a row, each answered `200 ok`.
async fn get_ok_twice(pool: &Pool<DirectConn>, addr: SocketAddr) {
    for which in ["first", "second"] {
        assert_eq!(get(pool, addr).await.expect(which), (200, b"ok".to_vec()));
    }
}

#[tokio::test]
async fn a_length_delimited_response_is_read_and_its_connection_used_again() {
    let up = upstream(&[OK, OK]).await;
    let pool = Pool::default();
    get_ok_twice(&pool, up.addr).await;
    assert_eq!(up.connections.load(Ordering::SeqCst), 1, "not reused");
    let heads = up.heads.lock().expect("heads").clone();
    assert!(
        heads[0].starts_with(
            "GET /p?q=1 HTTP/1.1\r\nhost: a.example\r\nx-forwarded-for: 192.0.2.7\r\n"
        ),
        "{}",
        heads[0]
    );
}

#[tokio::test]
async fn a_chunked_response_is_decoded_and_its_connection_used_again() {
    const CHUNKED: &[u8] =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    let up = upstream(&[CHUNKED, CHUNKED]).await;
    let pool = Pool::default();
    for _ in 0..2 {
        assert_eq!(
            get(&pool, up.addr).await.expect("get"),
            (200, b"abcde".to_vec())
        );
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 1, "not reused");
}

#[tokio::test]
async fn interim_responses_are_skipped_and_a_body_until_close_is_read_whole() {
    const UNTIL_CLOSE: &[u8] =
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n\r\nall of it";
    let up = upstream(&[UNTIL_CLOSE]).await;
    let pool = Pool::default();
    assert_eq!(
        get(&pool, up.addr).await.expect("get"),
        (200, b"all of it".to_vec())
    );
    assert!(
        pool.take(&key(up.addr)).is_none(),
        "a closed connection was pooled"
    );
}

fn key(addr: SocketAddr) -> PoolKey {
    PoolKey {
        addr,
        send_timeout: SECOND,
    }
}

#[tokio::test]
async fn a_kept_connection_the_upstream_closed_is_replaced_without_failing_the_request() {
    // One answer per connection, then the upstream closes it.
    let up = upstream(&[OK]).await;
    let pool = Pool::default();
    // Whether or not the close has been seen yet, the second request must not fail.
    get_ok_twice(&pool, up.addr).await;
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_never_comes_back() {
    const HALF: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345";
    let up = upstream(&[HALF]).await;
    let pool = Pool::default();
    let resp = send(&pool, Method::GET, up.addr).await;
    let mut body = resp.into_body();
    let first = body.frame().await.expect("a frame").expect("data");
    assert_eq!(first.data_ref().map(|d| &d[..]), Some(&b"12345"[..]));
    drop(body);
    assert!(
        pool.take(&key(up.addr)).is_none(),
        "a half-read connection was pooled"
    );
}

#[tokio::test]
async fn a_head_response_has_no_body_and_frees_its_connection_at_once() {
    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n";
    let up = upstream(&[HEAD, HEAD]).await;
    let pool = Pool::default();
    let resp = send(&pool, Method::HEAD, up.addr).await;
    assert_eq!(resp.headers()["content-length"], "9");
    assert!(resp.body().is_end_stream());
    assert!(pool.take(&key(up.addr)).is_some(), "not handed back");
}

#[tokio::test]
async fn an_upstream_that_never_answers_times_out_and_one_that_talks_nonsense_is_a_protocol_error()
{
    let silent = upstream(&[]).await;
    let pool = Pool::default();
    // A head that never ends, on a connection kept open (a second answer is due).
    let never: &'static [&'static [u8]] = &[b"HTTP/1.1 200 OK\r\nX-Slow: ", b""];
    let slow = upstream(never).await;
    match get(&pool, slow.addr).await {
        Err(ForwardError::Timeout(t)) => assert_eq!(t, SECOND),
        other => panic!("expected a read timeout, got {other:?}"),
    }
    match get(&pool, silent.addr).await {
        Err(ForwardError::Upstream { kind, .. }) => assert_eq!(kind, UpstreamError::Reset),
        other => panic!("expected a reset, got {other:?}"),
    }
    let nonsense = upstream(&[b"SSH-2.0-OpenSSH_9.6\r\n\r\n"]).await;
    match get(&pool, nonsense.addr).await {
        Err(ForwardError::Upstream { kind, .. }) => assert_eq!(kind, UpstreamError::Protocol),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn time_the_client_side_takes_between_polls_is_not_upstream_silence() {
    // The head, then "ab" and "cd" each when told; the connection stays open.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (next, mut told) = tokio::sync::mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
            .await;
        for part in [&b"ab"[..], b"cd", b""] {
            told.recv().await;
            let _ = stream.write_all(part).await;
        }
    });
    let pool = Pool::default();
    let resp = send(&pool, Method::GET, addr).await;
    let mut body = resp.into_body();
    // Waiting for the upstream: the read timeout (1 s) runs.
    let polled = poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
    assert!(polled.is_pending(), "{polled:?}");
    next.send(()).expect("upstream");
    let first = body.frame().await.expect("a frame").expect("data");
    assert_eq!(first.data_ref().map(|d| &d[..]), Some(&b"ab"[..]));
    // A slow client: the clock moves 5 s on while nothing polls the body; then the upstream sends the rest.
    tokio::time::advance(Duration::from_secs(5)).await;
    next.send(()).expect("upstream");
    let second = body.frame().await.expect("a frame");
    assert_eq!(
        second
            .expect("not a read timeout")
            .data_ref()
            .map(|d| &d[..]),
        Some(&b"cd"[..])
    );
}

#[tokio::test]
async fn a_large_body_reads_in_growing_pieces_and_its_buffer_is_let_go_in_the_pool() {
    const LEN: usize = 1 << 20;
    let mut answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\n\r\n").into_bytes();
    answer.resize(answer.len() + LEN, b'x');
    let answer: &'static [u8] = Box::leak(answer.into_boxed_slice());
    let answers: &'static [&'static [u8]] = Box::leak(Box::new([answer, answer]));
    let up = upstream(answers).await;
    let pool = Pool::default();
    let resp = send(&pool, Method::GET, up.addr).await;
    let mut body = resp.into_body();
    let (mut received, mut largest) = (0, 0);
    while let Some(frame) = body.frame().await {
        let data = frame.expect("data").into_data().expect("a data frame");
        received += data.len();
        largest = largest.max(data.len());
    }
    assert_eq!(received, LEN);
    assert!(
        largest > 2 * READ_SIZE,
        "reads never grew: largest frame {largest}"
    );
    let conn = pool.take(&key(up.addr)).expect("handed back");
    assert_eq!(conn.read_size, READ_SIZE);
    assert!(
        conn.read.capacity() <= 2 * READ_SIZE,
        "{}",
        conn.read.capacity()
    );
}
