//! The `/metrics` endpoint: a `tiny_http` server on its own thread that hands
//! out the last published exposition. A scrape never touches the collector or
//! the recording threads: it clones an `Arc` under a lock held for nanoseconds.

use std::io::Cursor;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, PoisonError};

use tiny_http::{Header, Method, Response, Server, StatusCode};

use super::{Body, CONTENT_TYPE};

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
    server: Arc<Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` (a port already in use is an error here) and serves.
    pub(crate) fn start(
        addr: SocketAddr,
        published: Arc<Published>,
    ) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let server = Server::from_listener(listener, None).map_err(std::io::Error::other)?;
        let server = Arc::new(server);
        let thread = {
            let server = server.clone();
            std::thread::Builder::new()
                .name("runmetrics-http".to_owned())
                .spawn(move || serve(&server, &published))?
        };
        Ok(MetricsServer {
            server,
            thread: Some(thread),
            addr,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

fn serve(server: &Server, published: &Published) {
    let header =
        |name: &str, value: &str| Header::from_bytes(name, value).expect("static header is valid");
    let metrics = header("Content-Type", CONTENT_TYPE);
    let plain = header("Content-Type", "text/plain; charset=utf-8");
    let allow = header("Allow", "GET, HEAD");
    let text = |s: &str| Arc::new(s.as_bytes().to_vec());
    for request in server.incoming_requests() {
        let (status, headers, body) = match (request.method(), request.url().split('?').next()) {
            (Method::Get | Method::Head, Some("/metrics")) => {
                (200, vec![metrics.clone()], published.get())
            }
            (_, Some("/metrics")) => (
                405,
                vec![plain.clone(), allow.clone()],
                text("only GET and HEAD are allowed on /metrics\n"),
            ),
            _ => (
                404,
                vec![plain.clone()],
                text("not found; metrics are at /metrics\n"),
            ),
        };
        let len = body.len();
        let response = Response::new(
            StatusCode(status),
            headers,
            Cursor::new(Body(body)),
            Some(len),
            None,
        );
        // A client that went away is not our problem.
        let _ = request.respond(response);
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
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
