//! A deadline on the public listener's connections between requests. actix bounds the head of
//! a connection's first request only (`client_request_timeout`; its keep-alive timer stops at
//! the first byte of the next one), and once it has answered a request whose body it did not
//! read whole (a refusal of a chunked body), it reads the rest of that body for as long as it
//! comes. Either way one byte every few seconds held a connection, and its place under
//! `max_connections`, for ever.
//!
//! So every accepted stream is [`Guarded`]: from its accept, and from the end of each answer,
//! the next request's head must have been read within `gap` (keep-alive plus the head's own
//! timeout); past it, the stream's next read or write fails and actix closes the connection.
//! While a request is being handled ([`Busy`], taken by the middleware around every route),
//! the handler bounds itself (the body timeout, the ack deadline).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::rt::net::{ActixStream, Ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::connections::Place;

/// What a connection's stream and the requests on it share.
#[derive(Debug)]
pub struct Guard {
    /// Requests being handled.
    busy: AtomicUsize,
    /// When the connection last had no request being handled: its accept, or an answer.
    idle_since: Mutex<Instant>,
    gap: Duration,
}

impl Guard {
    fn new(gap: Duration) -> Guard {
        Guard {
            busy: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            gap,
        }
    }

    /// When the connection's time between requests runs out, or `None` while one is handled.
    fn deadline(&self) -> Option<Instant> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = *self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
        Some(since + self.gap)
    }
}

/// A request being handled on a guarded connection; its end starts the time to the next one.
struct Handling(Arc<Guard>);

impl Handling {
    fn begin(guard: &Arc<Guard>) -> Handling {
        guard.busy.fetch_add(1, Ordering::AcqRel);
        Handling(guard.clone())
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The middleware around every public route: the connection is busy while a request on it is
/// handled (its body read, its event committed).
pub async fn busy(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let handling = request.conn_data::<Arc<Guard>>().map(Handling::begin);
    let response = next.call(request).await;
    drop(handling);
    response
}

/// An accepted stream, its connection's place under the caps, and the deadline between requests.
pub struct Guarded<S> {
    stream: S,
    guard: Arc<Guard>,
    timer: Pin<Box<Sleep>>,
    _place: Place,
}

impl<S> Guarded<S> {
    pub fn new(stream: S, place: Place, gap: Duration) -> Guarded<S> {
        let guard = Arc::new(Guard::new(gap));
        let timer = Box::pin(tokio::time::sleep_until(Instant::now() + gap));
        Guarded {
            stream,
            guard,
            timer,
            _place: place,
        }
    }

    /// What the requests on this connection share with it (for `on_connect`).
    pub fn guard(&self) -> &Arc<Guard> {
        &self.guard
    }

    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The error that ends the connection once its time between requests ran out (checked at
    /// every read and write: a body drained at full speed never waits).
    fn expired(&self) -> Option<io::Error> {
        let deadline = self.guard.deadline()?;
        (deadline <= Instant::now()).then(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "no request head within the time between requests",
            )
        })
    }

    /// Called when the stream would wait: sets the timer to wake the connection when its time
    /// runs out (or, while a request is handled, a gap from now, to look again).
    fn wake_at_deadline(&mut self, cx: &mut Context<'_>) {
        let wake_at = match self.guard.deadline() {
            Some(deadline) => deadline,
            // A request is handled: the timer is moved on only once it went off.
            None if self.timer.is_elapsed() => Instant::now() + self.guard.gap,
            None => self.timer.deadline(),
        };
        if self.timer.deadline() != wake_at {
            self.timer.as_mut().reset(wake_at);
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            // Already past: wake at once to find it expired.
            cx.waker().wake_by_ref();
        }
    }

    /// `poll` of the stream, unless the time between requests ran out.
    fn guard_poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut S, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if let Some(err) = self.expired() {
            return Poll::Ready(Err(err));
        }
        let polled = poll(&mut self.stream, cx);
        if polled.is_pending() {
            self.wake_at_deadline(cx);
        }
        polled
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.guard_poll(cx, |stream, cx| Pin::new(stream).poll_read(cx, buf))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.guard_poll(cx, |stream, cx| Pin::new(stream).poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.guard_poll(cx, |stream, cx| Pin::new(stream).poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// TLS reads through it (`actix_tls`'s acceptor wants an [`ActixStream`]).
impl<S: ActixStream> ActixStream for Guarded<S> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        S::poll_read_ready(&self.stream, cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        S::poll_write_ready(&self.stream, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_deadline_runs_between_requests_only() {
        let guard = Arc::new(Guard::new(Duration::from_secs(6)));
        let accepted = Instant::now();
        assert_eq!(guard.deadline(), Some(accepted + Duration::from_secs(6)));
        let handling = Handling::begin(&guard);
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(guard.deadline(), None, "a request is being handled");
        drop(handling);
        assert_eq!(
            guard.deadline(),
            Some(accepted + Duration::from_secs(26)),
            "from the answer on"
        );
    }
}
