//! The `/metrics` endpoint: hyper's HTTP/1 server on a single-threaded tokio
//! runtime on the `runmetrics-http` thread, handing out the last published
//! exposition. A scrape never touches the collector or the recording threads:
//! it clones an `Arc` under a lock held for nanoseconds, and the response
//! body is that `Arc`'s buffer, not a copy.
//!
//! The server is reachable over the network, so it bounds what a client can
//! make it hold (see the constants): it never reads a request body (it
//! answers and closes), a request head is at most [`MAX_HEAD_BYTES`] in at
//! most [`MAX_HEADERS`] headers and must arrive within
//! [`HEADER_READ_TIMEOUT`], which is also how long a connection may sit idle;
//! a response that makes no progress for [`WRITE_STALL_TIMEOUT`] drops its
//! connection, and at most [`MAX_CONNECTIONS`] are open, the least recently
//! active one closed to make room for a newcomer. Every connection is a task
//! on the one thread: an idle one costs a few KiB, never a thread.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE as CONTENT_TYPE_HEADER};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::AbortHandle;

use super::{Body, CONTENT_TYPE};

/// Connections open at once. A newcomer beyond it closes the least recently
/// active one (an idle client, one that stopped reading, a slow header):
/// scrapers (one or two Prometheus servers) are always the most recently
/// active, so a flood of connections cannot lock them out, and the
/// recording process keeps its file descriptors for its run files.
const MAX_CONNECTIONS: usize = 128;
/// A request head (request line and headers) larger than this is answered
/// 431 and closed; hyper never buffers more than [`MAX_BUF_BYTES`].
const MAX_HEAD_BYTES: usize = 8 << 10;
/// hyper's read buffer (pipelined requests included) and write queue.
const MAX_BUF_BYTES: usize = 16 << 10;
/// More headers than this is answered 431 (Prometheus sends about six).
const MAX_HEADERS: usize = 32;
/// A request head must be complete this long after the server starts
/// waiting for it, on a new connection or between keep-alive requests, so
/// this is also the idle timeout. Prometheus reconnects after it.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A response that cannot write a byte for this long (its client stopped
/// reading) drops the connection.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The oldest a connection gets: then it closes once its current response is
/// sent, or [`WRITE_STALL_TIMEOUT`] later at the latest (a client reading a
/// byte at a time cannot keep one, and an old exposition, for ever).
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);
/// Connections the kernel completes and queues before the server accepts
/// them: a burst of connects beyond it waits for SYN retries (a second or
/// more), so it is larger than std's 128.
const BACKLOG: u32 = 1024;
/// How long a connection lives: [`MAX_CONNECTION_AGE`], then
/// [`WRITE_STALL_TIMEOUT`] to finish its answer.
const LIFETIME: Lifetime = Lifetime {
    age: MAX_CONNECTION_AGE,
    grace: WRITE_STALL_TIMEOUT,
};

#[derive(Clone, Copy, Debug)]
struct Lifetime {
    /// Then the connection takes no further request.
    age: Duration,
    /// Then it is dropped, answer sent or not.
    grace: Duration,
}

/// The pause after a failed `accept` (out of file descriptors) before the
/// next, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// The last encoded exposition, written by the collector, read by scrapes.
#[derive(Debug, Default)]
pub(crate) struct Published(Mutex<Arc<Vec<u8>>>);

impl Published {
    pub(crate) fn set(&self, text: Vec<u8>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(text);
    }

    pub(crate) fn get(&self) -> Arc<Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A running `/metrics` server; stops when dropped.
pub(crate) struct MetricsServer {
    /// Aborting the accept loop ends `block_on` on the server thread, which
    /// then drops the runtime and with it every connection.
    stop: AbortHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` (a port already in use is an error here) and serves.
    pub(crate) fn start(
        addr: SocketAddr,
        published: Arc<Published>,
    ) -> std::io::Result<MetricsServer> {
        MetricsServer::start_with(addr, published, LIFETIME)
    }

    /// [`start`](Self::start) with a connection lifetime of its own (the
    /// tests' is short).
    fn start_with(
        addr: SocketAddr,
        published: Arc<Published>,
        lifetime: Lifetime,
    ) -> std::io::Result<MetricsServer> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let listener = {
            let _in_runtime = runtime.enter();
            let socket = match addr {
                SocketAddr::V4(_) => TcpSocket::new_v4()?,
                SocketAddr::V6(_) => TcpSocket::new_v6()?,
            };
            // As std's `TcpListener::bind` does on unix: a restarted process
            // can bind while old connections linger in TIME_WAIT.
            #[cfg(unix)]
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(BACKLOG)?
        };
        let addr = listener.local_addr()?;
        let accepting = runtime.spawn(accept(listener, published, lifetime));
        let stop = accepting.abort_handle();
        let thread = std::thread::Builder::new()
            .name("runmetrics-http".to_owned())
            .spawn(move || {
                // Ends when `stop` aborts the loop (or it panics, which
                // nothing a client sends can make it do).
                let _ = runtime.block_on(accepting);
                // Dropping the runtime drops every connection's task.
                drop(runtime);
            })?;
        Ok(MetricsServer {
            stop,
            thread: Some(thread),
            addr,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.abort();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

/// The open connections, by the order they came in.
#[derive(Default)]
struct Connections {
    next: u64,
    open: BTreeMap<u64, Open>,
}

struct Open {
    activity: Arc<Activity>,
    task: AbortHandle,
}

impl Connections {
    /// Takes out the connection that has been quiet the longest (the oldest
    /// among equals): the caller aborts its task once the table is unlocked.
    fn take_least_active(&mut self) -> Option<AbortHandle> {
        let quietest = self
            .open
            .iter()
            .min_by_key(|(id, open)| (open.activity.last(), **id))
            .map(|(id, _)| *id)?;
        self.open.remove(&quietest).map(|open| open.task)
    }
}

/// Takes a connection out of the table when its task ends, however it ends.
struct Registered {
    connections: Arc<Mutex<Connections>>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.connections).open.remove(&self.id);
    }
}

fn lock(connections: &Mutex<Connections>) -> std::sync::MutexGuard<'_, Connections> {
    connections.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept(listener: TcpListener, published: Arc<Published>, lifetime: Lifetime) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    let connections = Arc::new(Mutex::new(Connections::default()));
    let epoch = Instant::now();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) if is_per_connection(&e) => continue,
            Err(_) => {
                // Out of file descriptors (or memory): make room and wait.
                let evicted = lock(&connections).take_least_active();
                if let Some(task) = evicted {
                    task.abort();
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut table = lock(&connections);
        let evicted = if table.open.len() >= MAX_CONNECTIONS {
            table.take_least_active()
        } else {
            None
        };
        let id = table.next;
        table.next += 1;
        let activity = Arc::new(Activity::new(epoch));
        let registered = Registered {
            connections: connections.clone(),
            id,
        };
        let task = tokio::spawn(serve(
            http.clone(),
            stream,
            activity.clone(),
            published.clone(),
            registered,
            lifetime,
        ));
        // The task cannot run before this: the runtime has one thread, and
        // it is here.
        table.open.insert(
            id,
            Open {
                activity,
                task: task.abort_handle(),
            },
        );
        drop(table);
        // Its task, dropped when the runtime next runs it, closes the socket
        // and takes itself out of the table (a no-op now).
        if let Some(task) = evicted {
            task.abort();
        }
    }
}

/// An `accept` error that concerns only the connection being accepted.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

async fn serve(
    http: http1::Builder,
    stream: TcpStream,
    activity: Arc<Activity>,
    published: Arc<Published>,
    registered: Registered,
    lifetime: Lifetime,
) {
    let _registered = registered;
    let io = Guarded {
        io: TokioIo::new(stream),
        activity,
        stall: None,
        stalled: false,
    };
    let service = hyper::service::service_fn(move |request| {
        std::future::ready(Ok::<_, Infallible>(respond(&request, &published)))
    });
    let mut connection = std::pin::pin!(http.serve_connection(io, service));
    let mut age = std::pin::pin!(tokio::time::sleep(lifetime.age));
    let mut closing = false;
    // The connection, until it ends or grows too old: then it finishes its
    // response (the write-stall timeout still applies) within a last grace.
    std::future::poll_fn(|cx| {
        if connection.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        if age.as_mut().poll(cx).is_ready() {
            if closing {
                return Poll::Ready(());
            }
            closing = true;
            connection.as_mut().graceful_shutdown();
            age.as_mut()
                .reset(tokio::time::Instant::now() + lifetime.grace);
            if connection.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            // Registers the new deadline.
            if age.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await;
}

/// The answer to any request: the exposition for GET and HEAD on `/metrics`
/// (hyper leaves out the body for HEAD), 405 for other methods there, 404
/// elsewhere. A request with a body is answered without reading it, and the
/// connection closes after the answer.
fn respond(request: &Request<hyper::body::Incoming>, published: &Published) -> Response<Payload> {
    let on_metrics = request.uri().path() == "/metrics";
    let (status, content_type, body) = match (request.method(), on_metrics) {
        (&Method::GET | &Method::HEAD, true) => (
            StatusCode::OK,
            CONTENT_TYPE,
            Bytes::from_owner(Body(published.get())),
        ),
        (_, true) => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"only GET and HEAD are allowed on /metrics\n"),
        ),
        (_, false) => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"not found; metrics are at /metrics\n"),
        ),
    };
    let mut response = Response::new(Payload(Some(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE_HEADER, HeaderValue::from_static(content_type));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    if !hyper::body::Body::is_end_stream(request.body()) {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A response body of one buffer: the published exposition (shared, not
/// copied) or a static text.
pub(crate) struct Payload(Option<Bytes>);

impl hyper::body::Body for Payload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

/// When a connection last moved a byte, in milliseconds since the server
/// started: what eviction compares.
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new(epoch: Instant) -> Activity {
        let a = Activity {
            epoch,
            last_ms: AtomicU64::new(0),
        };
        a.touch();
        a
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> u64 {
        self.last_ms.load(Ordering::Relaxed)
    }
}

/// A connection's socket that notes its activity and fails a write that has
/// made no progress for [`WRITE_STALL_TIMEOUT`].
struct Guarded {
    io: TokioIo<TcpStream>,
    activity: Arc<Activity>,
    /// Made the first time a write waits, then reset: most connections
    /// never need it.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The deadline in `stall` is armed: writes are waiting since it was set.
    stalled: bool,
}

impl Guarded {
    /// Passes on a write's result, minding the stall deadline while it waits.
    fn mind<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.stalled = false;
            self.activity.touch();
            return result;
        }
        let deadline = tokio::time::Instant::now() + WRITE_STALL_TIMEOUT;
        let stall = match &mut self.stall {
            Some(stall) => {
                if !self.stalled {
                    stall.as_mut().reset(deadline);
                }
                stall
            }
            None => self
                .stall
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.stalled = true;
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Read for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if result.is_ready() {
            this.activity.touch();
        }
        result
    }
}

impl Write for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.mind(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.mind(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_flush(cx);
        this.mind(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_shutdown(cx);
        this.mind(cx, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;

    const SHORT: Lifetime = Lifetime {
        age: Duration::from_millis(300),
        grace: Duration::from_millis(300),
    };

    fn server(text: Vec<u8>) -> MetricsServer {
        let published = Arc::new(Published::default());
        published.set(text);
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        MetricsServer::start_with(addr, published, SHORT).unwrap()
    }

    /// Reads one response with a Content-Length; `None` at EOF or a reset.
    fn response(s: &mut TcpStream) -> Option<Vec<u8>> {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                Ok(_) => return None,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("{e}"),
            }
        }
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let len: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap();
        let mut body = vec![0; len];
        s.read_exact(&mut body).unwrap();
        Some(body)
    }

    #[test]
    fn a_busy_keep_alive_connection_closes_between_answers_at_its_age() {
        let server = server(b"text\n".to_vec());
        let mut s = TcpStream::connect(server.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let start = Instant::now();
        let mut answered = 0;
        loop {
            if s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
                .is_err()
            {
                break;
            }
            match response(&mut s) {
                Some(body) => {
                    assert_eq!(body, b"text\n", "every answer is whole");
                    answered += 1;
                }
                None => break,
            }
            assert!(start.elapsed() < Duration::from_secs(3), "still open");
            std::thread::sleep(Duration::from_millis(20));
        }
        let lived = start.elapsed();
        assert!(answered > 5, "served until its age: {answered}");
        assert!(
            lived >= SHORT.age,
            "closed at its age, not before: {lived:?}"
        );
    }

    #[test]
    fn a_connection_past_its_age_is_dropped_after_the_grace_even_unread() {
        let big = vec![b'a'; 32 << 20];
        let server = server(big);
        let mut s = TcpStream::connect(server.local_addr()).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        // Well past age + grace, well before the 5 s write stall.
        std::thread::sleep(SHORT.age + SHORT.grace + Duration::from_millis(700));
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut got = Vec::new();
        let end = s.read_to_end(&mut got);
        assert!(
            end.is_ok()
                || end
                    .as_ref()
                    .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionReset),
            "closed, not waiting: {end:?}"
        );
        assert!(got.len() < 32 << 20, "dropped mid-answer: {}", got.len());
    }

    #[test]
    fn a_request_with_a_body_is_answered_and_closed() {
        let server = server(b"text\n".to_vec());
        let mut s = TcpStream::connect(server.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 200"), "{text}");
        assert!(text.contains("connection: close"), "{text}");
        assert!(text.ends_with("\r\n\r\ntext\n"), "{text}");
    }
}
