//! Pushes to a Prometheus Pushgateway, like prometheus_client's
//! `push_to_gateway` (PUT), `pushadd_to_gateway` (POST) and
//! `delete_from_gateway` (DELETE). Requests run on the `runmetrics-push`
//! thread with a blocking `reqwest` client, never on the caller's thread or
//! async runtime.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use crossbeam_channel::{unbounded, Sender};
use reqwest::Url;

use super::exposition::Exposition;
use super::published::Generation;
use super::{Body, CONTENT_TYPE};
use crate::collector::sink::{deadline, EndAnswer, Request, RunView, Sink, View};
use crate::config::PushAuth;
use crate::error::{EndRunError, PushError};
use crate::site::SiteInfo;

/// How a push treats the metrics already in the gateway's group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushMethod {
    /// PUT: replace every metric of the group (`push_to_gateway`).
    Put,
    /// POST: replace only the metrics with the names pushed (`pushadd_to_gateway`).
    Post,
    /// DELETE: remove the whole group (`delete_from_gateway`).
    Delete,
}

/// The group URL: `{gateway}/metrics/job/{job}/{k}/{v}...`, the grouping key
/// sorted by key. A value that is empty or holds `/` or a space is sent as
/// `{k}@base64/{urlsafe base64}` (empty: `=`); others are percent-encoded.
pub(crate) fn group_url(
    gateway: &str,
    job: &str,
    grouping: &[(String, String)],
) -> Result<Url, PushError> {
    let mut url = Url::parse(gateway).map_err(|e| PushError::InvalidUrl {
        url: crate::redact::url(gateway),
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(PushError::InvalidUrl {
            url: crate::redact::url(gateway),
            reason: "it must be an http:// or https:// URL".to_owned(),
        });
    }
    let mut pairs: Vec<(&str, &str)> = grouping
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut segments: Vec<String> = vec!["metrics".to_owned()];
    for (k, v) in std::iter::once(("job", job)).chain(pairs) {
        if v.is_empty() || v.contains('/') || v.contains(' ') {
            segments.push(format!("{k}@base64"));
            segments.push(if v.is_empty() {
                "=".to_owned()
            } else {
                base64::engine::general_purpose::URL_SAFE.encode(v)
            });
        } else {
            segments.push(k.to_owned());
            segments.push(v.to_owned());
        }
    }
    url.path_segments_mut()
        .map_err(|()| PushError::InvalidUrl {
            url: crate::redact::url(gateway),
            reason: "it cannot take a path".to_owned(),
        })?
        .pop_if_empty()
        .extend(&segments);
    Ok(url)
}

/// What a reply or an error must never show: the credentials pushes
/// carry, in every form they take in a request (as given, percent-decoded,
/// and the basic-auth header's base64), and the URL's query values.
fn secrets(url: &Url, auth: Option<&PushAuth>) -> Vec<String> {
    let mut out = Vec::new();
    let basic = |user: &str, password: Option<&str>| {
        base64::engine::general_purpose::STANDARD
            .encode(format!("{user}:{}", password.unwrap_or_default()))
    };
    match auth {
        Some(PushAuth::Basic { user, password }) => {
            out.push(basic(user.expose(), Some(password.expose())));
            out.push(user.expose().to_owned());
            out.push(password.expose().to_owned());
        }
        Some(PushAuth::Bearer(token)) => out.push(token.expose().to_owned()),
        None => {}
    }
    if !url.username().is_empty() || url.password().is_some() {
        let user = percent_decoded(url.username());
        let password = url.password().map(percent_decoded);
        out.push(basic(&user, password.as_deref()));
        out.extend([url.username().to_owned(), user]);
        if let Some(p) = url.password() {
            out.push(p.to_owned());
        }
        out.extend(password);
    }
    for pair in url.query().unwrap_or_default().split('&') {
        if let Some((_, value)) = pair.split_once('=') {
            out.push(value.to_owned());
            out.push(percent_decoded(value));
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// `%XX` sequences decoded (as UTF-8, lossily).
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How much of a gateway's error reply is read: enough for its message,
/// never what a hostile server could make us hold.
const REPLY_READ: u64 = 4096;

/// Who hears how a push went: called once, on the push thread, so that
/// whoever waits for a push (a caller of `end_run` or `Recorder::push`)
/// waits there and the collector never does. A reply dropped unsent (the
/// push thread gone) hears `PushError::Gone`.
pub(crate) struct Reply(Option<Answer>);

/// What a [`Reply`] calls with the push's outcome.
type Answer = Box<dyn FnOnce(Result<(), PushError>) + Send>;

impl Reply {
    pub(crate) fn new(answer: impl FnOnce(Result<(), PushError>) + Send + 'static) -> Reply {
        Reply(Some(Box::new(answer)))
    }

    pub(crate) fn send(mut self, result: Result<(), PushError>) {
        if let Some(answer) = self.0.take() {
            answer(result);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(answer) = self.0.take() {
            answer(Err(PushError::Gone));
        }
    }
}

struct Job {
    method: PushMethod,
    /// What to push: its text is rendered on the push thread (once per
    /// generation: a scrape of it shares it).
    body: Arc<Generation>,
    /// `None`: a periodic push, whose failure is only counted.
    reply: Option<Reply>,
}

/// The push thread and where to send its work. Its queue is unbounded, so
/// handing a push over never blocks; it stays short because each push with
/// a reply has a caller waiting for it, and periodic pushes go one at a
/// time.
pub(crate) struct Pusher {
    jobs: Option<Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    failures: Arc<AtomicU64>,
    /// A background push is queued or under way: the next one is skipped,
    /// so pushes to a hung gateway never pile up.
    busy: Arc<AtomicBool>,
}

impl Pusher {
    pub(crate) fn start(
        url: Url,
        timeout: Duration,
        auth: Option<PushAuth>,
    ) -> Result<Pusher, PushError> {
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| PushError::Client(e.without_url().to_string()))?;
        let secrets = secrets(&url, auth.as_ref());
        let (jobs, rx) = unbounded::<Job>();
        let failures = Arc::new(AtomicU64::new(0));
        let failed = failures.clone();
        let busy = Arc::new(AtomicBool::new(false));
        let done = busy.clone();
        let thread = std::thread::Builder::new()
            .name("runmetrics-push".to_owned())
            .spawn(move || {
                for job in rx {
                    let result = send(
                        &client,
                        &url,
                        timeout,
                        auth.as_ref(),
                        &secrets,
                        job.method,
                        job.body,
                    );
                    if result.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    match job.reply {
                        Some(reply) => reply.send(result),
                        None => done.store(false, Ordering::Release),
                    }
                }
            })
            .map_err(|e| PushError::Client(e.to_string()))?;
        Ok(Pusher {
            jobs: Some(jobs),
            thread: Some(thread),
            failures,
            busy,
        })
    }

    /// Pushes `body` without waiting: for periodic pushes, which must never
    /// hold up the collector. A failure (or a full queue) is only counted.
    pub(crate) fn push_in_background(&self, method: PushMethod, body: Arc<Generation>) {
        if self.busy.swap(true, Ordering::AcqRel) {
            // The previous one has not finished: skip this one.
            self.failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let queued = self.jobs.as_ref().is_some_and(|j| {
            j.try_send(Job {
                method,
                body,
                reply: None,
            })
            .is_ok()
        });
        if !queued {
            self.busy.store(false, Ordering::Release);
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Pushes that failed so far.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Hands `body` to the push thread, which tells `reply` how it went;
    /// never waits (a push thread that is gone drops the job, and `reply`
    /// hears `PushError::Gone`).
    pub(crate) fn push(&self, method: PushMethod, body: Arc<Generation>, reply: Reply) {
        if let Some(jobs) = self.jobs.as_ref() {
            let _ = jobs.send(Job {
                method,
                body,
                reply: Some(reply),
            });
        }
    }
}

/// The push sink: the exposition it pushes (what a scrape would see, with
/// its push failures), pushed on `push_interval`, at the end of each run
/// (`end_run` answers when the gateway has) and when asked
/// (`Recorder::push`). The collector never waits for the gateway.
pub(crate) struct PushSink {
    exposition: Exposition,
    pusher: Pusher,
    interval: Option<Duration>,
    /// `None`: never.
    next_push: Option<Instant>,
}

impl PushSink {
    pub(crate) fn new(exposition: Exposition, pusher: Pusher, interval: Option<Duration>) -> Self {
        let next_push = interval.and_then(|i| deadline(Instant::now(), i));
        PushSink {
            exposition,
            pusher,
            interval,
            next_push,
        }
    }

    fn publish(&mut self, view: &View<'_>) {
        self.exposition.push_failures = self.pusher.failures();
        self.exposition.publish(view.run.as_ref(), view.sites);
    }

    /// Publishes a fresh snapshot and hands it to the push thread, which
    /// tells `reply` how the push went.
    fn push(&mut self, view: &View<'_>, method: PushMethod, reply: Reply) {
        self.publish(view);
        self.pusher.push(method, self.exposition.current(), reply);
    }
}

impl Sink for PushSink {
    fn next_due(&self) -> Option<Instant> {
        let publish = self.exposition.next_publish();
        match (publish, self.next_push) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn due(&mut self, view: &View<'_>, now: Instant) {
        if self.exposition.next_publish().is_some_and(|at| now >= at) {
            self.publish(view);
        }
        if let Some(at) = self.next_push.filter(|at| now >= *at) {
            // Periodic pushes are best effort and never wait for the
            // gateway: a failure shows in runmetrics_push_failures_total
            // and the next one retries.
            self.publish(view);
            self.pusher
                .push_in_background(PushMethod::Put, self.exposition.current());
            self.next_push = self
                .interval
                .and_then(|i| deadline(at.max(Instant::now()), i));
        }
    }

    fn refresh(&mut self, view: &View<'_>) {
        self.publish(view);
    }

    fn sampled(&mut self, cpu_percent: Option<f64>, rss_bytes: u64) {
        self.exposition.sampled(cpu_percent, rss_bytes);
    }

    fn run_closed(&mut self, run: &RunView<'_>, sites: &[SiteInfo]) {
        self.exposition.run_closed(run, sites);
    }

    fn run_ended(
        &mut self,
        view: &View<'_>,
        path: &std::path::Path,
        answer: &mut Option<EndAnswer>,
    ) {
        // After the file is safely written: a failed push loses nothing.
        let Some(answer) = answer.take() else { return };
        let path = path.to_owned();
        self.push(
            view,
            PushMethod::Put,
            Reply::new(move |pushed| {
                answer(match pushed {
                    Ok(()) => Ok(path),
                    Err(source) => Err(EndRunError::Push { path, source }),
                })
            }),
        );
    }

    fn request(&mut self, view: &View<'_>, request: &mut Request) {
        if let Some((method, reply)) = request
            .downcast_mut::<PushRequest>()
            .and_then(|r| r.0.take())
        {
            self.push(
                view,
                method,
                Reply::new(move |result| {
                    let _ = reply.send(result);
                }),
            );
        }
    }
}

/// `Recorder::push`'s request to the push sink. Dropped untaken (no
/// gateway set), it answers `PushError::NotConfigured`.
pub(crate) struct PushRequest(Option<(PushMethod, Sender<Result<(), PushError>>)>);

impl PushRequest {
    pub(crate) fn new(method: PushMethod, reply: Sender<Result<(), PushError>>) -> Self {
        PushRequest(Some((method, reply)))
    }
}

impl Drop for PushRequest {
    fn drop(&mut self) {
        if let Some((_, reply)) = self.0.take() {
            let _ = reply.send(Err(PushError::NotConfigured));
        }
    }
}

fn send(
    client: &reqwest::blocking::Client,
    url: &Url,
    timeout: Duration,
    auth: Option<&PushAuth>,
    secrets: &[String],
    method: PushMethod,
    body: Arc<Generation>,
) -> Result<(), PushError> {
    let mut request = match method {
        PushMethod::Put => client.put(url.clone()),
        PushMethod::Post => client.post(url.clone()),
        PushMethod::Delete => client.delete(url.clone()),
    };
    if method != PushMethod::Delete {
        let body = body.text();
        let len = body.len() as u64;
        let body = reqwest::blocking::Body::sized(std::io::Cursor::new(Body(body)), len);
        request = request
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(body);
    }
    request = match auth {
        Some(PushAuth::Basic { user, password }) => {
            request.basic_auth(user.expose(), Some(password.expose()))
        }
        Some(PushAuth::Bearer(token)) => request.bearer_auth(token.expose()),
        None => request,
    };
    let shown = crate::redact::url(url.as_str());
    let response = request.send().map_err(|e| {
        if e.is_timeout() {
            PushError::Timeout {
                url: shown.clone(),
                timeout,
            }
        } else {
            PushError::Request {
                url: shown.clone(),
                reason: crate::redact::text(&error_chain(&e.without_url()), secrets),
            }
        }
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    // The start of the reply, which may echo the request (a proxy's error
    // page quoting its headers): shown only through `redact::text`.
    let mut reply = Vec::new();
    let _ = std::io::Read::read_to_end(
        &mut std::io::Read::take(response, REPLY_READ + 1),
        &mut reply,
    );
    if reply.len() as u64 > REPLY_READ {
        // Cut: a secret the cut split would not be recognised, so the last
        // stretch (as long as the longest secret) goes too.
        let longest = secrets.iter().map(String::len).max().unwrap_or(0);
        reply.truncate((REPLY_READ as usize).saturating_sub(longest));
    }
    Err(PushError::Status {
        url: shown,
        status: status.as_u16(),
        body: crate::redact::text(&String::from_utf8_lossy(&reply), secrets),
    })
}

/// An error and its causes, as one line ("connection refused" is a cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl Drop for Pusher {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn grouping_key_is_sorted_and_encoded_like_prometheus_client() {
        let url = group_url(
            "http://127.0.0.1:9091",
            "al_inference",
            &g(&[
                ("env", "dev"),
                ("path", "a/b"),
                ("empty", ""),
                ("space", "x y"),
                ("pct", "50%"),
            ]),
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9091/metrics/job/al_inference/empty@base64/=/env/dev/path@base64/YS9i/pct/50%25/space@base64/eCB5"
        );
        let url = group_url("https://gw.example/prefix/", "a/b", &[]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://gw.example/prefix/metrics/job@base64/YS9i"
        );
    }

    #[test]
    fn bad_urls_are_refused_without_showing_credentials() {
        let e = group_url("ftp://user:secret@host/", "j", &[]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("http://") && !msg.contains("secret"), "{msg}");
        assert!(group_url("not a url", "j", &[]).is_err());
        let e = group_url("bob:hunter2@host:9091", "j", &[]).unwrap_err();
        let msg = format!("{e} {e:?}");
        assert!(!msg.contains("bob") && !msg.contains("hunter2"), "{msg}");
    }
}
