//! The response body on the direct path: read from the upstream connection as the client's side polls
//! for it, delimited by its framing, and the connection handed back to the pool once the body has been
//! read to its end. A body cut short, broken, or delimited by the connection's close never hands it back.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use tracing::warn;

use super::DirectConn;
use super::chunked::{ChunkError, Chunked, Step};
use super::head::Framing;
use crate::proxy::body::BoxError;
use crate::proxy::deadline::Silence;
use crate::proxy::pool::{BodyReadTimedOut, Pool, PoolKey};

enum State {
    /// Bytes still to come.
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

/// What the read buffer holds of the body.
enum Buffered {
    Data(Bytes),
    Empty,
    End,
}

impl State {
    fn take_buffered(&mut self, read: &mut BytesMut) -> Result<Buffered, ChunkError> {
        Ok(match self {
            Self::Length(0) => Buffered::End,
            Self::Length(_) | Self::UntilClose if read.is_empty() => Buffered::Empty,
            Self::Length(left) => {
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(read.len());
                *left -= take as u64;
                Buffered::Data(read.split_to(take).freeze())
            }
            Self::UntilClose => Buffered::Data(read.split().freeze()),
            Self::Chunked(decoder) => match decoder.decode(read)? {
                Step::Data(data) => Buffered::Data(data),
                Step::NeedMore => Buffered::Empty,
                Step::Done => Buffered::End,
            },
        })
    }

    /// A delimited body with nothing left to read. (A chunked body's end is only known from its last
    /// chunk, which `take_buffered` reports as `End`.)
    fn ended(&self) -> bool {
        matches!(self, Self::Length(0))
    }
}

/// The upstream closed its connection before the end of a delimited body.
#[derive(Debug, thiserror::Error)]
#[error("upstream closed the connection before the end of the response body")]
pub struct ClosedMidBody;

pub struct DirectBody {
    /// `None` once the body ended or failed.
    conn: Option<DirectConn>,
    state: State,
    /// Where the connection goes back once the body has ended; `None` when it cannot carry another request.
    back: Option<(Pool<DirectConn>, PoolKey)>,
    read_timeout: Duration,
    silence: Silence,
    upstream: SocketAddr,
}

impl DirectBody {
    pub(super) fn new(
        conn: DirectConn,
        framing: Framing,
        back: Option<(Pool<DirectConn>, PoolKey)>,
        read_timeout: Duration,
        upstream: SocketAddr,
    ) -> Self {
        let state = match framing {
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunked::default()),
            Framing::UntilClose => State::UntilClose,
        };
        let mut body = Self {
            conn: Some(conn),
            state,
            back,
            read_timeout,
            silence: Silence::default(),
            upstream,
        };
        // No body at all (HEAD, 204, 304, Content-Length: 0): the connection is free at once.
        if body.state.ended() {
            body.finish();
        }
        body
    }

    /// The body ended: the connection goes back to the pool, if it may.
    fn finish(&mut self) {
        let conn = self.conn.take();
        if let (Some(mut conn), Some((pool, key))) = (conn, self.back.take()) {
            conn.shrink();
            pool.put(key, conn);
        }
    }

    /// The body failed: the connection is closed.
    fn fail(&mut self, error: impl Into<BoxError>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.back = None;
        Poll::Ready(Some(Err(error.into())))
    }
}

impl Body for DirectBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.state.take_buffered(&mut conn.read) {
                Ok(Buffered::Data(data)) => {
                    this.silence.reset();
                    if this.state.ended() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Buffered::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Buffered::Empty) => {}
                Err(e) => return this.fail(e),
            }
            match conn.poll_read_more(cx) {
                Poll::Ready(Ok(0)) if matches!(this.state, State::UntilClose) => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => return this.fail(ClosedMidBody),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return this.fail(e),
                Poll::Pending => {
                    if this
                        .silence
                        .too_long(&mut conn.timer, cx, this.read_timeout)
                    {
                        warn!(upstream = %this.upstream, timeout = ?this.read_timeout, "upstream stopped sending the response body; closing");
                        return this.fail(BodyReadTimedOut(this.read_timeout));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // A body that reached its length has let its connection go already.
        self.conn.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.conn, &self.state) {
            (None, _) => SizeHint::with_exact(0),
            (Some(_), State::Length(left)) => SizeHint::with_exact(*left),
            (Some(_), _) => SizeHint::default(),
        }
    }
}
