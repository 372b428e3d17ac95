//! A timer for a deadline that keeps moving later (each request, each frame of a body): it is moved only
//! when it must fire sooner, or when it fires before the current deadline — not on every move, which would
//! take and re-insert a timer-wheel entry per request.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// Allocated on first use; see the module docs.
#[derive(Debug, Default)]
pub struct MovingDeadline {
    timer: Option<Pin<Box<Sleep>>>,
}

impl MovingDeadline {
    /// `Ready` once `deadline` has passed; else the task is woken at or before it.
    pub fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if deadline < timer.deadline() {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if Instant::now() < deadline {
            // Fired for an earlier deadline that has moved since.
            timer.as_mut().reset(deadline);
            return timer.as_mut().poll(cx);
        }
        Poll::Ready(())
    }
}

/// nginx's `proxy_read_timeout` between two reads of a response body, and `proxy_send_timeout` between two
/// writes to the upstream: the wait runs only while the upstream makes no progress and starts again after
/// each piece, so time the client side takes between polls never counts (an exchange that never waits
/// never reads the clock).
#[derive(Debug, Default)]
pub struct Silence {
    since: Option<Instant>,
}

impl Silence {
    /// The upstream made progress (a piece read or written).
    pub fn reset(&mut self) {
        self.since = None;
    }

    /// A read or write would wait: `true` once nothing has moved for `limit`; else `timer` wakes the task
    /// by then.
    pub fn too_long(
        &mut self,
        timer: &mut MovingDeadline,
        cx: &mut Context<'_>,
        limit: std::time::Duration,
    ) -> bool {
        let since = *self.since.get_or_insert_with(Instant::now);
        timer.poll_until(cx, since + limit).is_ready()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Poll once for `deadline` (arming or moving the timer), without waiting.
    async fn poll_once(timer: &mut MovingDeadline, deadline: Instant) -> Poll<()> {
        std::future::poll_fn(|cx| Poll::Ready(timer.poll_until(cx, deadline))).await
    }

    async fn fires_at(timer: &mut MovingDeadline, deadline: Instant) -> Duration {
        let start = Instant::now();
        std::future::poll_fn(|cx| timer.poll_until(cx, deadline)).await;
        Instant::now() - start
    }

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_current_deadline_whether_it_moved_later_or_sooner() {
        let s = Duration::from_secs;
        let mut timer = MovingDeadline::default();
        let start = Instant::now();
        assert!(poll_once(&mut timer, start + s(10)).await.is_pending());
        assert_eq!(
            fires_at(&mut timer, start + s(25)).await,
            s(25),
            "moved later"
        );

        let mut timer = MovingDeadline::default();
        let start = Instant::now();
        assert!(poll_once(&mut timer, start + s(60)).await.is_pending());
        assert_eq!(
            fires_at(&mut timer, start + s(5)).await,
            s(5),
            "moved sooner"
        );
        assert!(poll_once(&mut timer, start + s(5)).await.is_ready());
    }
}
