//! The one place that decides what may be shown of a URL, a gateway's reply
//! or an HTTP client's error: `Debug` output, error messages and files all
//! go through here, so no credential reaches them.
//!
//! A URL keeps its scheme, host, port and path; user info becomes `***@`,
//! each query value `***`, and the fragment goes. A reply or an error text
//! has every configured secret replaced by `***`, the rest of any line that
//! names a credential (`Authorization: ...`, `token ...`) cut, control
//! characters made spaces, and is cut to [`SHOWN`] characters.

/// At most this many characters of a URL, reply or error text are shown.
pub(crate) const SHOWN: usize = 200;

/// Words after which the rest of a reply's line may be a credential (in
/// lower case; matched without regard to case).
#[cfg_attr(not(feature = "push"), allow(dead_code))]
const CREDENTIAL_WORDS: &[&str] = &[
    "authorization",
    "cookie",
    "bearer",
    "basic",
    "token",
    "password",
    "passwd",
    "secret",
    "api-key",
    "api_key",
    "apikey",
];

/// `url` as it may be shown: no user info, no query values, no fragment,
/// at most [`SHOWN`] characters. Works on any text, a URL that does not
/// parse included: whatever could be user info is hidden.
pub(crate) fn url(url: &str) -> String {
    let url = url.trim();
    let url = url.split('#').next().unwrap_or_default();
    let (before_query, query) = match url.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (url, None),
    };
    let mut out = String::new();
    match before_query.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => {
            out.push_str(scheme);
            out.push_str("://");
            let end = rest.find(['/', '\\']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            let (hidden, host, path) = match authority.rfind('@') {
                Some(at) => (true, &authority[at + 1..], path),
                // Not a host and port: a password with an unencoded `/`
                // ("http://user:pa/ss@host") is user info up to the last `@`.
                None if !is_host_port(authority) => match rest.rfind('@') {
                    Some(at) => {
                        let after = &rest[at + 1..];
                        let end = after.find(['/', '\\']).unwrap_or(after.len());
                        (true, &after[..end], &after[end..])
                    }
                    None => (false, authority, path),
                },
                None => (false, authority, path),
            };
            if hidden {
                out.push_str("***@");
            }
            out.push_str(if is_host_port(host) { host } else { "***" });
            out.push_str(path);
        }
        // No scheme: whatever comes before the last `@` may be user info.
        _ => match before_query.rfind('@') {
            Some(at) => {
                out.push_str("***@");
                out.push_str(&before_query[at + 1..]);
            }
            None => out.push_str(before_query),
        },
    }
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) => format!("{key}=***"),
                None if pair.is_empty() => String::new(),
                None => "***".to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    shown(&out)
}

/// A gateway's reply or an HTTP client's error as it may be shown: every
/// one of `secrets` replaced by `***`, the rest of each line that names a
/// credential cut, control characters and runs of white space made one
/// space, at most [`SHOWN`] characters.
#[cfg_attr(not(feature = "push"), allow(dead_code))]
pub(crate) fn text(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    // Longest first, so a secret that holds another is replaced whole.
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        text = text.replace(secret.as_str(), "***");
    }
    let mut out = String::new();
    for line in text.split(['\n', '\r']) {
        let lower = line.to_ascii_lowercase();
        let cut = CREDENTIAL_WORDS
            .iter()
            .filter_map(|w| lower.find(w).map(|at| at + w.len()))
            .min();
        match cut {
            Some(end) => {
                out.push_str(&line[..end]);
                out.push_str(" *** ");
            }
            None => out.push_str(line),
        }
        out.push(' ');
    }
    let mut collapsed = String::with_capacity(out.len());
    for c in out.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if !(c == ' ' && collapsed.ends_with(' ')) {
            collapsed.push(c);
        }
    }
    shown(collapsed.trim())
}

/// At most [`SHOWN`] characters of `s`, control characters replaced; `…`
/// marks a cut.
fn shown(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(SHOWN)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().nth(SHOWN).is_some() {
        out.push('…');
    }
    out
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn is_host_port(s: &str) -> bool {
    let (host, port) = match s.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, rest)) => {
                if !addr
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.' | '%'))
                {
                    return false;
                }
                match rest.strip_prefix(':') {
                    Some(port) => ("v6", Some(port)),
                    None if rest.is_empty() => ("v6", None),
                    None => return false,
                }
            }
            None => return false,
        },
        None => match s.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        },
    };
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '~' | '%'))
        && port.is_none_or(|p| p.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_user_info_query_values_and_fragments() {
        for (given, shown) in [
            ("http://u:p@h:1/x", "http://***@h:1/x"),
            ("http://u@h", "http://***@h"),
            (
                "https://h/p?token=abc&x=1#frag",
                "https://h/p?token=***&x=***",
            ),
            ("http://h/?abc", "http://h/?***"),
            ("http://bob:pa/ss@host:9091/x", "http://***@host:9091/x"),
            ("http://bob:p?w@host", "http://***?***"),
            ("bob:pw@host:9091", "***@host:9091"),
            ("localhost:9091", "localhost:9091"),
            ("http://[::1]:9091/m", "http://[::1]:9091/m"),
            (
                "http://h:1/metrics/job@base64/YS9i",
                "http://h:1/metrics/job@base64/YS9i",
            ),
            ("http://", "http://***"),
            ("a\nb", "a?b"),
        ] {
            assert_eq!(url(given), shown, "{given}");
        }
        let long = format!("http://h/{}", "p".repeat(1000));
        assert_eq!(url(&long).chars().count(), SHOWN + 1);
    }

    #[test]
    fn texts_lose_secrets_credential_lines_and_control_characters() {
        let secrets = ["hunter2".to_owned(), "Ym9iOmh1bnRlcjI=".to_owned()];
        let reply = "PUT /x?token=t0k HTTP/1.1\r\nAuthorization: Basic Ym9iOmh1bnRlcjI=\r\nHost: h\r\n\r\npw hunter2\u{1b}[31m";
        let shown = text(reply, &secrets);
        for leak in ["hunter2", "Ym9i", "t0k", "\u{1b}", "\r", "\n"] {
            assert!(!shown.contains(leak), "{leak:?} in {shown:?}");
        }
        assert!(shown.contains("Host: h"), "{shown}");
        assert!(shown.starts_with("PUT /x?token ***"), "{shown}");
        let long = "x".repeat(10_000);
        assert_eq!(text(&long, &[]).chars().count(), SHOWN + 1);
    }
}
