//! The open connections: the table the accept loop evicts from, and each
//! connection's task, which serves it until it ends or outlives its
//! [`Lifetime`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

use super::guarded::{Activity, Guarded};
use super::respond::respond;
use super::MAX_CONNECTIONS;
use crate::prometheus::published::Published;

/// How long a connection lives.
#[derive(Clone, Copy, Debug)]
pub(super) struct Lifetime {
    /// Then the connection takes no further request.
    pub(super) age: Duration,
    /// Then it is dropped, answer sent or not.
    pub(super) grace: Duration,
}

/// The open connections, by the order they came in.
#[derive(Default)]
pub(super) struct Connections {
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

fn lock(connections: &Mutex<Connections>) -> MutexGuard<'_, Connections> {
    connections.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Closes the connection that has been quiet the longest, if any.
pub(super) fn close_least_active(connections: &Mutex<Connections>) {
    let evicted = lock(connections).take_least_active();
    if let Some(task) = evicted {
        task.abort();
    }
}

/// Serves `stream` on a task of its own, in the table; when
/// [`MAX_CONNECTIONS`] are open, the least active one is closed for it.
pub(super) fn open(
    connections: &Arc<Mutex<Connections>>,
    stream: TcpStream,
    http: &http1::Builder,
    published: &Arc<Published>,
    lifetime: Lifetime,
    epoch: Instant,
) {
    let mut table = lock(connections);
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

/// The connection, until it ends or grows too old: then it finishes its
/// response (the write-stall timeout still applies) within a last grace.
async fn serve(
    http: http1::Builder,
    stream: TcpStream,
    activity: Arc<Activity>,
    published: Arc<Published>,
    _registered: Registered,
    lifetime: Lifetime,
) {
    let io = Guarded::new(TokioIo::new(stream), activity);
    let service = hyper::service::service_fn(move |request| {
        std::future::ready(Ok::<_, Infallible>(respond(&request, &published)))
    });
    let mut connection = std::pin::pin!(http.serve_connection(io, service));
    if tokio::time::timeout(lifetime.age, connection.as_mut())
        .await
        .is_ok()
    {
        return;
    }
    connection.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(lifetime.grace, connection).await;
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read as _, Write as _};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use super::super::{test_server, SHORT};

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
        let server = test_server(b"text\n".to_vec());
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
        let server = test_server(big);
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
}
