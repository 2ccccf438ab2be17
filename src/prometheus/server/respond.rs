//! The answer to a request, and [`Payload`], its body of one buffer.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::header::{
    HeaderValue, ACCEPT, ALLOW, CONNECTION, CONTENT_TYPE as CONTENT_TYPE_HEADER, VARY,
};
use hyper::{Method, Request, Response, StatusCode};

use crate::prometheus::published::Published;
use crate::prometheus::{native, Body, CONTENT_TYPE};

/// The answer to any request: the exposition for GET and HEAD on `/metrics`
/// (hyper leaves out the body for HEAD; the protobuf one when the `Accept`
/// header prefers it, see [`wants_protobuf`]), 405 for other methods there, 404
/// elsewhere. A request with a body is answered without reading it, and the
/// connection closes after the answer. The first request for an encoding of
/// a generation renders it, here on the server thread (see `published.rs`).
pub(super) fn respond(
    request: &Request<hyper::body::Incoming>,
    published: &Published,
) -> Response<Payload> {
    let on_metrics = request.uri().path() == "/metrics";
    let (status, content_type, body) = match (request.method(), on_metrics) {
        (&Method::GET | &Method::HEAD, true) if wants_protobuf(request.headers().get(ACCEPT)) => (
            StatusCode::OK,
            native::CONTENT_TYPE,
            Bytes::from_owner(Body(published.get().protobuf())),
        ),
        (&Method::GET | &Method::HEAD, true) => (
            StatusCode::OK,
            CONTENT_TYPE,
            Bytes::from_owner(Body(published.get().text())),
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
    if on_metrics {
        headers.insert(VARY, HeaderValue::from_static("Accept"));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    if !hyper::body::Body::is_end_stream(request.body()) {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Whether `accept` asks for the delimited protobuf exposition
/// (`application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
/// encoding=delimited`, what Prometheus sends first with native histograms
/// on) with a quality at least that of the text (`text/plain`, `text/*`,
/// `*/*`). No header, or one that cannot be read, gets the text.
fn wants_protobuf(accept: Option<&HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|a| a.to_str().ok()) else {
        return false;
    };
    let (mut protobuf, mut text) = (0.0f64, 0.0f64);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let kind = parts.next().unwrap_or("").to_ascii_lowercase();
        let (mut q, mut proto, mut delimited) = (1.0, false, false);
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "q" => q = v.parse::<f64>().unwrap_or(0.0).clamp(0.0, 1.0),
                "proto" => proto = v == "io.prometheus.client.MetricFamily",
                "encoding" => delimited = v == "delimited",
                _ => {}
            }
        }
        match kind.as_str() {
            "application/vnd.google.protobuf" if proto && delimited => protobuf = protobuf.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    protobuf > 0.0 && protobuf >= text
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
    use super::wants_protobuf;
    use hyper::header::HeaderValue;

    #[test]
    fn the_protobuf_goes_to_who_prefers_it() {
        let asks = |h: &str| wants_protobuf(Some(&HeaderValue::from_str(h).unwrap()));
        // Prometheus 2.42 with --enable-feature=native-histograms.
        assert!(asks(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
             encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;q=0.5,\
             text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        ));
        // Prometheus without it.
        assert!(!asks(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
             version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(!asks("*/*"));
        assert!(!asks(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily"
        ));
        assert!(!asks(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
             encoding=delimited;q=0.1,text/plain;q=0.9"
        ));
        assert!(!asks(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
             encoding=delimited;q=0"
        ));
        assert!(!wants_protobuf(None));
    }

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
