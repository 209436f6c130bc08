//! An upstream's response body, read off its connection as the caller asks for it. When the
//! body ends, the connection goes back to the pool if it can carry another request; a body
//! dropped before its end closes it.

use super::connection::{self, Connection};
use super::wire::{BodyFraming, Decoded};
use crate::body::BoxError;
use bytes::Bytes;
use hyper::body::{Body as _, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The upstream closed the connection before the end of the body it announced.
#[derive(Debug, thiserror::Error)]
#[error("the upstream closed the connection in the middle of a body")]
pub struct CutShort;

pub struct UpstreamBody {
    /// `None` once the body is complete.
    reading: Option<Reading>,
}

struct Reading {
    connection: Connection,
    framing: BodyFraming,
    reusable: bool,
    origin_id: usize,
}

impl UpstreamBody {
    pub(super) fn new(
        connection: Connection,
        framing: BodyFraming,
        reusable: bool,
        origin_id: usize,
    ) -> UpstreamBody {
        let mut body = UpstreamBody {
            reading: Some(Reading {
                connection,
                framing,
                reusable,
                origin_id,
            }),
        };
        if body.is_end_stream() {
            body.finish();
        }
        body
    }

    /// The body is complete: its connection is kept for the next request, or closed.
    fn finish(&mut self) {
        if let Some(reading) = self.reading.take() {
            if reading.reusable {
                connection::keep_idle(reading.origin_id, reading.connection);
            }
        }
    }
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            let Some(reading) = self.reading.as_mut() else {
                return Poll::Ready(None);
            };
            match reading.framing.decode(&mut reading.connection.read_buf) {
                Ok(Decoded::Data(data)) => {
                    if reading.framing.remaining() == Some(0) {
                        self.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::End) => {
                    self.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => {}
                Err(e) => {
                    self.reading = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
            match std::task::ready!(reading.connection.poll_fill(cx)) {
                Ok(0) if reading.framing.ends_at_close() => {
                    self.reading = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    self.reading = None;
                    return Poll::Ready(Some(Err(CutShort.into())));
                }
                Ok(_) => {}
                Err(e) => {
                    self.reading = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.reading
            .as_ref()
            .is_none_or(|reading| reading.framing.remaining() == Some(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading.as_ref() {
            None => SizeHint::with_exact(0),
            Some(reading) => match reading.framing.remaining() {
                Some(left) => SizeHint::with_exact(left),
                None => SizeHint::default(),
            },
        }
    }
}
