//! One open connection to an upstream, and this thread's pool of idle ones.

use super::{Origin, SendError, Transport};
use bytes::BytesMut;
use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// How long an idle connection stays reusable. Below the upstreams' own keep-alive timeout
/// (PostgREST closes a connection idle for 30 s): a connection the upstream is closing must not
/// be reused, or the request written on it meets a reset.
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections kept per origin and thread; more in flight at once are closed after use.
const MAX_KEPT: usize = 256;
/// Reads start this large and double, up to [`MAX_READ`], while they fill what was offered.
const FIRST_READ: usize = 8 * 1024;
const MAX_READ: usize = 64 * 1024;

/// Plain TCP or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// An open connection and what was read off it and not yet used.
pub struct Connection {
    stream: Stream,
    /// Bytes read and not yet consumed (the rest of a head, or of a body).
    pub read_buf: BytesMut,
    read_size: usize,
    idle_since: Instant,
    /// The deadline of the exchange under way, kept from one exchange to the next (see
    /// [`Connection::take_timer`]); `None` while an exchange holds it.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Connection {
    /// Dials `origin` (TLS verified for https) within [`CONNECT_TIMEOUT`].
    pub async fn open(origin: &Origin) -> Result<Connection, SendError> {
        let address = &origin.address;
        let connect_failed = |source| SendError::Connect {
            address: address.clone(),
            source,
        };
        let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address.as_str()))
            .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(connect_failed(e)),
            Err(_) => {
                return Err(connect_failed(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
                )))
            }
        };
        tcp.set_nodelay(true).map_err(connect_failed)?;
        let stream = match &origin.transport {
            Transport::Plain => Stream::Plain(tcp),
            Transport::Tls { name, config } => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                // Certificate and name checked here: a failure is named like a refused connection.
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(connect_failed)?;
                Stream::Tls(Box::new(tls))
            }
        };
        Ok(Connection {
            stream,
            read_buf: BytesMut::new(),
            read_size: FIRST_READ,
            idle_since: Instant::now(),
            timer: None,
        })
    }

    /// A timer that fires at `deadline`: the connection's own, moved there. tokio leaves a
    /// registered timer in its wheel when its deadline only moves later (the wheel re-files it
    /// when the old one comes), so on a kept connection this costs almost nothing.
    pub fn take_timer(&mut self, deadline: tokio::time::Instant) -> Pin<Box<tokio::time::Sleep>> {
        match self.timer.take() {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Gives the timer back for the next exchange.
    pub fn put_timer(&mut self, timer: Pin<Box<tokio::time::Sleep>>) {
        self.timer = Some(timer);
    }

    /// Reads what has arrived into `read_buf`; `Ok(0)` when the upstream closed the connection.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read_buf.capacity() - self.read_buf.len() < self.read_size / 2 {
            self.read_buf.reserve(self.read_size);
        }
        let offered = self.read_buf.capacity() - self.read_buf.len();
        let read = std::task::ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.stream),
            cx,
            &mut self.read_buf
        ))?;
        if read == offered && self.read_size < MAX_READ {
            self.read_size *= 2;
        }
        Poll::Ready(Ok(read))
    }

    pub async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Sends what TLS holds back (nothing to do for plain TCP).
    pub async fn flush(&mut self) -> io::Result<()> {
        self.stream.flush().await
    }

    /// True when nothing arrived while it sat idle. An end of stream (the upstream closed it),
    /// an error or stray bytes each make it unusable. Costs no system call unless the socket
    /// became readable since it was last read to exhaustion.
    fn is_quiet(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        Pin::new(&mut self.stream)
            .poll_read(&mut cx, &mut buf)
            .is_pending()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

thread_local! {
    /// This thread's idle connections, by origin id; the most recently used last. A handful of
    /// origins at most, so a list.
    static POOL: RefCell<Vec<(usize, Vec<Connection>)>> = const { RefCell::new(Vec::new()) };
}

/// An idle connection to `origin` that is still good, the most recently used first; those the
/// upstream closed, or idle too long, are dropped on the way.
pub fn take_idle(origin: &Origin) -> Option<Connection> {
    POOL.with_borrow_mut(|pool| {
        let (_, idle) = pool.iter_mut().find(|(id, _)| *id == origin.id)?;
        let now = Instant::now();
        while let Some(mut connection) = idle.pop() {
            if now.duration_since(connection.idle_since) < IDLE_TIMEOUT && connection.is_quiet() {
                return Some(connection);
            }
        }
        None
    })
}

/// Keeps a connection whose exchange is complete for the next request to `origin_id`.
pub fn keep_idle(origin_id: usize, mut connection: Connection) {
    if !connection.read_buf.is_empty() {
        // Bytes after the end of the answer: the connection's framing cannot be trusted.
        return;
    }
    connection.idle_since = Instant::now();
    POOL.with_borrow_mut(|pool| {
        let idle = match pool.iter().position(|(id, _)| *id == origin_id) {
            Some(at) => &mut pool[at].1,
            None => {
                pool.push((origin_id, Vec::new()));
                &mut pool.last_mut().expect("just pushed").1
            }
        };
        // The oldest go first: those past the idle cut-off, then any beyond the bound.
        let stale = idle
            .iter()
            .take_while(|c| connection.idle_since.duration_since(c.idle_since) >= IDLE_TIMEOUT)
            .count();
        let over = (idle.len() - stale + 1).saturating_sub(MAX_KEPT);
        idle.drain(..stale + over);
        idle.push(connection);
    });
}

#[cfg(test)]
pub fn idle_count(origin: &Origin) -> usize {
    POOL.with_borrow(|pool| {
        pool.iter()
            .find(|(id, _)| *id == origin.id)
            .map_or(0, |(_, idle)| idle.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An origin whose listener accepts connections and holds them open, quiet.
    async fn quiet_upstream() -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: url::Url = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Origin::new(&url).unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_pool_keeps_at_most_max_kept_connections_per_origin() {
        let origin = quiet_upstream().await;
        let mut open = Vec::new();
        for _ in 0..MAX_KEPT + 5 {
            open.push(Connection::open(&origin).await.unwrap());
        }
        for connection in open {
            keep_idle(origin.id, connection);
        }
        assert_eq!(idle_count(&origin), MAX_KEPT);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_idle_past_the_cutoff_is_dropped_not_reused() {
        let origin = quiet_upstream().await;
        keep_idle(origin.id, Connection::open(&origin).await.unwrap());
        keep_idle(origin.id, Connection::open(&origin).await.unwrap());
        assert_eq!(idle_count(&origin), 2);
        // Both idle longer than the cut-off (the upstream may be closing them).
        POOL.with_borrow_mut(|pool| {
            for (_, idle) in pool.iter_mut() {
                for connection in idle.iter_mut() {
                    connection.idle_since -= IDLE_TIMEOUT + Duration::from_secs(1);
                }
            }
        });
        assert!(take_idle(&origin).is_none());
        assert_eq!(idle_count(&origin), 0);
        // A fresh one is reused.
        keep_idle(origin.id, Connection::open(&origin).await.unwrap());
        assert!(take_idle(&origin).is_some());
    }
}
