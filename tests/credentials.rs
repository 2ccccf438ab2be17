//! No credential appears anywhere: not in `Debug` of `Config`, `Recorder`
//! or an error, not in an error message, not in a run file, even when the
//! gateway is a real HTTP peer that echoes our request back (headers and
//! all) in an error reply, as a misconfigured proxy does.
#![cfg(feature = "push")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};

use runmetrics::{Config, EndRunError, PushError, PushMethod, Recorder};
use serde_json::Value;

const USER: &str = "alice-basic-user";
const PASSWORD: &str = "alice-basic-pw-0451";
const URL_USER: &str = "bob-url-user";
const URL_PASSWORD: &str = "bob-url-pw-1138";
const TOKEN: &str = "bearer-tok-2187";
const QUERY_TOKEN: &str = "query-tok-9000";
const QUERY_OTHER: &str = "query-other-4242";

/// Everything that must never be shown, in the forms it takes on the wire.
fn secrets() -> Vec<String> {
    use base64::Engine;
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        USER.into(),
        PASSWORD.into(),
        URL_USER.into(),
        URL_PASSWORD.into(),
        TOKEN.into(),
        QUERY_TOKEN.into(),
        QUERY_OTHER.into(),
        b64(format!("{USER}:{PASSWORD}")),
        b64(format!("{URL_USER}:{URL_PASSWORD}")),
    ]
}

fn assert_clean(what: &str, text: &str) {
    for secret in secrets() {
        assert!(!text.contains(&secret), "{what} shows {secret:?}:\n{text}");
    }
}

/// A real HTTP peer: answers every request with a 500 whose body is the
/// request it received, head and body, byte for byte. Returns its address
/// and the requests it saw.
fn echo_server() -> (SocketAddr, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let echoed = format!("{head}{}", String::from_utf8_lossy(&body));
            let _ = tx.send(echoed.clone());
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{echoed}",
                echoed.len()
            );
        }
    });
    (addr, rx)
}

/// Makes a recorder for `config`, pushes (a 500 with our request in it),
/// ends a run (another 500), and checks every text the user can see.
fn check(what: &str, config: Config) {
    let (_, _) = (what, ());
    let dir = tempfile::tempdir().unwrap();
    assert_clean(&format!("{what}: Debug of Config"), &format!("{config:?}"));
    let rec = Recorder::new(config).unwrap();
    assert_clean(&format!("{what}: Debug of Recorder"), &format!("{rec:?}"));
    assert_clean(
        &format!("{what}: Debug of Recorder::config"),
        &format!("{:?} {:#?}", rec.config(), rec),
    );
    rec.start_run(dir.path()).unwrap();
    {
        let _t = rec.phase("p", "m");
    }
    match rec.push(PushMethod::Put) {
        Err(e @ PushError::Status { status: 500, .. }) => {
            let shown = format!("{e}\n{e:?}");
            assert_clean(&format!("{what}: push error"), &shown);
            let PushError::Status { body, .. } = &e else {
                unreachable!()
            };
            assert!(
                body.chars().count() <= 201,
                "{what}: body not capped: {body}"
            );
            assert!(
                !body.contains(['\r', '\n']),
                "{what}: control characters: {body:?}"
            );
            assert!(
                body.starts_with("PUT /"),
                "{what}: the reply is quoted: {body}"
            );
        }
        other => panic!("{what}: expected a 500, got {other:?}"),
    }
    let path = match rec.end_run(Value::Null) {
        Err(e @ EndRunError::Push { .. }) => {
            assert_clean(&format!("{what}: end_run error"), &format!("{e}\n{e:?}"));
            let EndRunError::Push { path, .. } = e else {
                unreachable!()
            };
            path
        }
        other => panic!("{what}: expected a push error, got {other:?}"),
    };
    let file = std::fs::read_to_string(&path).unwrap();
    assert_clean(&format!("{what}: run file"), &file);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let text = std::fs::read(entry.unwrap().path()).unwrap();
        assert_clean(
            &format!("{what}: a file in log_dir"),
            &String::from_utf8_lossy(&text),
        );
    }
}

#[test]
fn no_credential_is_shown_even_when_the_gateway_echoes_the_request() {
    let (addr, requests) = echo_server();
    let query = format!("?token={QUERY_TOKEN}&other={QUERY_OTHER}");
    check(
        "basic auth",
        Config::new()
            .pushgateway(format!("http://{addr}/gw{query}"))
            .push_basic_auth(USER, PASSWORD),
    );
    // The credentials did travel: the server saw them, so the test can fail.
    let seen: String = requests.try_iter().collect();
    assert!(seen.contains(QUERY_TOKEN), "{seen}");
    assert!(
        seen.to_ascii_lowercase().contains("authorization: basic"),
        "{seen}"
    );
    check(
        "bearer token",
        Config::new()
            .pushgateway(format!("http://{addr}/{query}"))
            .push_bearer_token(TOKEN),
    );
    let seen: String = requests.try_iter().collect();
    assert!(seen.contains(TOKEN), "{seen}");
    check(
        "user info in the URL",
        Config::new().pushgateway(format!("http://{URL_USER}:{URL_PASSWORD}@{addr}{query}")),
    );
}

#[test]
fn a_gateway_that_is_down_or_a_bad_url_shows_no_credential() {
    let port = common::free_port(); // nothing listens there
    let config = Config::new()
        .pushgateway(format!(
            "http://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{port}/?token={QUERY_TOKEN}"
        ))
        .push_basic_auth(USER, PASSWORD);
    let rec = Recorder::new(config).unwrap();
    match rec.push(PushMethod::Put) {
        Err(e @ PushError::Request { .. }) => {
            assert_clean("a refused push", &format!("{e}\n{e:?}"));
            assert!(e.to_string().contains(&port.to_string()), "{e}");
        }
        other => panic!("expected a request error, got {other:?}"),
    }
    for bad in [
        format!("{URL_USER}:{URL_PASSWORD}@127.0.0.1:9091"),
        format!("{URL_USER}:{URL_PASSWORD}@127.0.0.1:9091/?token={QUERY_TOKEN}"),
        format!("http://{URL_USER}:{URL_PASSWORD}/x@127.0.0.1:9091"),
        format!("http://{URL_USER}:{URL_PASSWORD}?{QUERY_TOKEN}@h"),
        format!("ftp://{URL_USER}:{URL_PASSWORD}@h/?token={QUERY_TOKEN}"),
        format!("http:{URL_USER}:{URL_PASSWORD}@h"),
        format!("http://h:99999/?token={QUERY_TOKEN}"),
    ] {
        let config = Config::new().pushgateway(bad.clone());
        assert_clean(
            &format!("Debug of Config for {bad}"),
            &format!("{config:?}"),
        );
        match Recorder::new(config) {
            Err(e) => assert_clean(&format!("the error for {bad}"), &format!("{e}\n{e:?}")),
            Ok(rec) => assert_clean(
                &format!("Debug of the Recorder for {bad}"),
                &format!("{rec:?}"),
            ),
        }
    }
}
