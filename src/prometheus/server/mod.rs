//! The `/metrics` endpoint: hyper's HTTP/1 server on a single-threaded tokio
//! runtime on the `runmetrics-http` thread, handing out the last published
//! exposition. A scrape never touches the collector or the recording threads:
//! it clones the last [`Generation`](super::published::Generation)'s `Arc`
//! under a lock held for nanoseconds, renders the encoding it asks for there
//! if no scrape of that generation has yet (outside the lock), and the
//! response body is the rendered buffer, shared, not a copy. That render is
//! the one work a scrape can cause beyond sending bytes, and no client can
//! cause it more than once per publish and encoding (milliseconds for
//! thousands of series, during which the other connections wait).
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
//!
//! Here: the limits, [`MetricsServer`] and the accept loop.
//! `connections.rs` keeps the table of open connections and serves each for
//! its lifetime, `guarded.rs` wraps its socket, `respond.rs` answers.

mod connections;
mod guarded;
mod respond;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::AbortHandle;

use super::published::Published;
use connections::{Connections, Lifetime};

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
/// The pause after a failed `accept` (out of file descriptors) before the
/// next, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

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
    pub(crate) fn start(addr: SocketAddr, published: Arc<Published>) -> io::Result<MetricsServer> {
        MetricsServer::start_with(addr, published, LIFETIME)
    }

    /// [`start`](Self::start) with a connection lifetime of its own (the
    /// tests' is short).
    fn start_with(
        addr: SocketAddr,
        published: Arc<Published>,
        lifetime: Lifetime,
    ) -> io::Result<MetricsServer> {
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
                connections::close_least_active(&connections);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        connections::open(&connections, stream, &http, &published, lifetime, epoch);
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

/// The tests' connection lifetime: short.
#[cfg(test)]
const SHORT: Lifetime = Lifetime {
    age: Duration::from_millis(300),
    grace: Duration::from_millis(300),
};

/// A server on a free local port publishing `text`, its connections living
/// [`SHORT`].
#[cfg(test)]
fn test_server(text: Vec<u8>) -> MetricsServer {
    let published = Arc::new(Published::serving(text));
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    MetricsServer::start_with(addr, published, SHORT).unwrap()
}
