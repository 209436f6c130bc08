//! The request body limit, applied while the body streams to PostgREST, in a way that still lets
//! the client read the 413.
//!
//! `http_body_util::Limited` would stop the stream at the limit, but it owns the body: once the
//! upstream request fails, the rest of what the client is still sending is unread, and closing a
//! socket with unread data makes the kernel answer with a reset — the client sees "connection
//! reset" or "broken pipe" instead of our 413. So the body is shared: the upstream side reads it
//! through [`LimitedBody`], and after a refusal [`drain`] reads and discards what is left (up to
//! a cap, and for a short time only, so a client announcing 10 GB cannot keep us busy).

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// Discard at most this much of an over-limit body before answering.
const DRAIN_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// ...and for at most this long.
const DRAIN_MAX_TIME: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("request body is larger than {0} bytes")]
pub struct TooLarge(pub u64);

/// The client's body, shared between the upstream request and the handler.
#[derive(Clone)]
pub struct SharedBody(Arc<Mutex<Incoming>>);

impl SharedBody {
    pub fn new(body: Incoming) -> Self {
        Self(Arc::new(Mutex::new(body)))
    }

    /// A view of the body that fails with [`TooLarge`] once more than `limit` bytes went by.
    pub fn limited(&self, limit: u64) -> LimitedBody {
        LimitedBody {
            shared: self.clone(),
            limit,
            seen: 0,
        }
    }
}

pub struct LimitedBody {
    shared: SharedBody,
    limit: u64,
    seen: u64,
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = {
            // Only the upstream client polls this body; the handler locks it only after that
            // request has ended, so the lock is never contended.
            let mut body = self.shared.0.lock().expect("body lock is not poisoned");
            Pin::new(&mut *body).poll_frame(cx)
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.seen += data.len() as u64;
                    if self.seen > self.limit {
                        return Poll::Ready(Some(Err(Box::new(TooLarge(self.limit)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.shared
            .0
            .lock()
            .map(|b| b.is_end_stream())
            .unwrap_or(false)
    }

    fn size_hint(&self) -> SizeHint {
        self.shared
            .0
            .lock()
            .map(|b| b.size_hint())
            .unwrap_or_default()
    }
}

/// Reads and discards what the client still sends, within the caps, so it can read our answer.
pub async fn drain(body: SharedBody) {
    let drained = async {
        let mut discarded = 0u64;
        loop {
            // The lock is taken inside each poll, never held across an await.
            let frame = futures_util::future::poll_fn(|cx| match body.0.lock() {
                Ok(mut guard) => Pin::new(&mut *guard).poll_frame(cx),
                Err(_) => Poll::Ready(None),
            })
            .await;
            match frame {
                Some(Ok(frame)) => {
                    discarded += frame.data_ref().map_or(0, |d| d.len() as u64);
                    if discarded > DRAIN_MAX_BYTES {
                        return;
                    }
                }
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, drained).await;
}

/// Drains a body the handler never handed upstream (refused from its `Content-Length`).
pub async fn drain_unshared(body: Incoming) {
    drain(SharedBody::new(body)).await
}
