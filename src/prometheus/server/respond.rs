//! The answer to a request, and [`Payload`], its body of one buffer.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE as CONTENT_TYPE_HEADER};
use hyper::{Method, Request, Response, StatusCode};

use super::Published;
use crate::prometheus::{Body, CONTENT_TYPE};

/// The answer to any request: the exposition for GET and HEAD on `/metrics`
/// (hyper leaves out the body for HEAD), 405 for other methods there, 404
/// elsewhere. A request with a body is answered without reading it, and the
/// connection closes after the answer.
pub(super) fn respond(
    request: &Request<hyper::body::Incoming>,
    published: &Published,
) -> Response<Payload> {
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
pub(super) struct Payload(Option<Bytes>);

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

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;
    use std::time::Duration;

    use super::super::test_server;

    #[test]
    fn a_request_with_a_body_is_answered_and_closed() {
        let server = test_server(b"text\n".to_vec());
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
