//! The layers import one way (ARCHITECTURE.md, "Layers"): every `crate::`
//! path in `src/` names its own module, or a module of a layer its layer may
//! use (the sinks see of the collector only `collector::sink`); an edge
//! against the direction only as `AGAINST` lists (none now), each entry
//! still in use; and `cli/` depends on `runmetrics` only in its tests. The
//! checker itself is shown to catch the four edges that once made a cycle.

use std::collections::BTreeSet;
use std::path::Path;

/// The layers, lowest first, each with its top-level modules (a file
/// `src/x.rs` or a folder `src/x/`; `lib` is `src/lib.rs`).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaves",
        &[
            "config",
            "error",
            "extra",
            "os",
            "redact",
            "run_id",
            "site",
            "slot",
            "ticks",
            "wall_clock",
        ],
    ),
    ("recording", &["local", "shared"]),
    ("collector", &["collector"]),
    ("sinks", &["report", "prometheus"]),
    (
        "facade",
        &[
            "lib",
            "recorder",
            "criterion_runs",
            "spans",
            "metrics_facade",
        ],
    ),
];

/// The layers each layer's modules may use besides their own module. The
/// sinks use neither each other nor the recording side, and of the
/// collector only its sink module (`SINK_SEAM`): they read the view it
/// hands them.
const MAY_USE: &[(&str, &[&str])] = &[
    ("leaves", &["leaves"]),
    ("recording", &["leaves", "recording"]),
    ("collector", &["leaves", "recording", "collector"]),
    ("sinks", &["leaves"]),
    (
        "facade",
        &["leaves", "recording", "collector", "sinks", "facade"],
    ),
];

/// What the sinks may name of the collector: the `Sink` trait and the plain
/// view it hands them, never `RunState` or the collector's other internals.
const SINK_SEAM: &str = "collector::sink";

/// Paths a module never names though its layer may: the collector reads
/// rings and tallies, never a thread's producer state or the timers.
const NEVER: &[(&str, &str)] = &[
    ("collector", "local::thread"),
    ("collector", "local::timer"),
];

/// Edges left against the direction, file by file: none since every sink
/// (the run-file writer and its sidecar, the exposition, the pusher) is
/// behind `collector::sink::Sink`; nothing may be added here.
const AGAINST: &[(&str, &str)] = &[];

#[test]
fn every_use_of_crate_follows_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_sources(&src, &src, &mut files);
    assert!(
        files.iter().any(|(p, _)| p == "local/timer.rs"),
        "found no sources under {}",
        src.display()
    );
    let found = check(&files);
    assert!(
        found.violations.is_empty(),
        "edges against the layers in ARCHITECTURE.md:\n{}",
        found.violations.join("\n")
    );
    let stale: Vec<_> = AGAINST
        .iter()
        .filter(|edge| !found.against_used.contains(edge))
        .collect();
    assert!(
        stale.is_empty(),
        "AGAINST lists edges the code no longer has; remove them here and in ARCHITECTURE.md: {stale:?}"
    );
}

#[test]
fn the_four_edges_of_the_old_cycle_are_each_refused() {
    let old = [
        (
            "config.rs",
            "pub(crate) fn retention(&self) -> crate::report::Retention {",
        ),
        (
            "local/timer.rs",
            "use crate::recorder::{global_shared, Recorder};",
        ),
        (
            "report/layout.rs",
            "recording_enabled: crate::local::timer::ENABLED,",
        ),
        (
            "site.rs",
            ".filter(|&id| id <= crate::local::ring::Record::MAX_SITE)",
        ),
    ];
    for (file, code) in old {
        let found = check(&[(file.to_owned(), code.to_owned())]);
        assert!(!found.violations.is_empty(), "{file}: {code}: {found:?}");
    }
    // A path in a comment or a string is no use; one after them is.
    let found = check(&[(
        "site.rs".to_owned(),
        "// crate::recorder\n/* crate::report */ let s = \"crate::local\"; let c = '\"';\n\
         let q = '\\''; let r = r#\"crate::shared \"# ; fn f<'a>(x: &'a str) {}\n\
         use crate::collector::Collector;"
            .to_owned(),
    )]);
    assert_eq!(found.violations.len(), 1, "{found:?}");
    assert!(
        found.violations[0].contains("crate::collector::Collector"),
        "{found:?}"
    );
    // A name re-exported at the root counts as its module's; braces expand.
    let found = check(&[(
        "local/thread.rs".to_owned(),
        "use crate::{config::Overflow, shared::{self, Shared}}; crate::Recorder::new".to_owned(),
    )]);
    assert_eq!(found.violations.len(), 1, "{found:?}");
    assert!(found.violations[0].contains("crate::Recorder"), "{found:?}");
}

#[test]
fn sinks_see_the_collector_only_through_the_sink_seam() {
    // The edges sinks had before the trait: refused now.
    let old = [
        ("report/mod.rs", "use crate::collector::run::RunState;"),
        ("report/sidecar.rs", "use crate::collector::events::Event;"),
        (
            "report/layout.rs",
            "use crate::collector::aggregate::{Durations, WindowStats};",
        ),
        (
            "prometheus/exposition.rs",
            "fn f(r: &crate::collector::run::RunState) {}",
        ),
    ];
    for (file, code) in old {
        let found = check(&[(file.to_owned(), code.to_owned())]);
        assert!(!found.violations.is_empty(), "{file}: {code}: {found:?}");
    }
    // The seam itself is allowed to every sink, and only to them.
    let seam = "use crate::collector::sink::{RunView, Sink, View};";
    for file in ["report/mod.rs", "prometheus/push.rs"] {
        let found = check(&[(file.to_owned(), seam.to_owned())]);
        assert!(found.violations.is_empty(), "{file}: {found:?}");
    }
    let found = check(&[("local/thread.rs".to_owned(), seam.to_owned())]);
    assert!(!found.violations.is_empty(), "{found:?}");
    // The collector naming a concrete sink is an edge against the layers.
    for code in [
        "use crate::report::RunFileSink;",
        "let p: crate::prometheus::push::Pusher;",
        "use crate::prometheus::exposition::Exposition;",
    ] {
        let found = check(&[("collector/mod.rs".to_owned(), code.to_owned())]);
        assert_eq!(found.violations.len(), 1, "{code}: {found:?}");
    }
}

#[test]
fn cli_depends_on_runmetrics_only_in_its_tests() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("cli/Cargo.toml");
    let toml = std::fs::read_to_string(&path).expect("reading cli/Cargo.toml");
    let mut section = "";
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section != "[dev-dependencies]" && line.starts_with("runmetrics") {
            let name = line.split(['=', '.', ' ']).next().unwrap_or("");
            assert!(
                name != "runmetrics",
                "cli/Cargo.toml has runmetrics in {section}: {line}"
            );
        }
    }
}

#[derive(Debug, Default)]
struct Found {
    violations: Vec<String>,
    against_used: BTreeSet<&'static (&'static str, &'static str)>,
}

/// Checks every `crate::` path of `files` (path under `src/`, text).
fn check(files: &[(String, String)]) -> Found {
    let root_names = root_reexports();
    let mut found = Found::default();
    for (file, text) in files {
        let from = module_of(file);
        let from_layer = layer_of(from)
            .unwrap_or_else(|| panic!("src/{file}: module `{from}` is in no layer of LAYERS"));
        let may_use = MAY_USE
            .iter()
            .find(|(layer, _)| *layer == from_layer)
            .map(|(_, may)| *may)
            .expect("every layer is in MAY_USE");
        for path in crate_paths(&strip_comments_and_strings(text)) {
            let first = path.split("::").next().unwrap_or("");
            let to = if layer_of(first).is_some() {
                first
            } else {
                root_names
                    .iter()
                    .find(|(name, _)| name == first)
                    .map_or("lib", |(_, module)| module.as_str())
            };
            let to_layer = layer_of(to)
                .unwrap_or_else(|| panic!("src/{file}: `crate::{path}`: `{to}` is in no layer"));
            let never = NEVER
                .iter()
                .any(|(m, p)| *m == from && (path == *p || path.starts_with(&format!("{p}::"))));
            if to == from && !never {
                continue;
            }
            if may_use.contains(&to_layer) && !never {
                continue;
            }
            let seam = path == SINK_SEAM || path.starts_with(&format!("{SINK_SEAM}::"));
            if from_layer == "sinks" && seam {
                continue;
            }
            if let Some(edge) = AGAINST
                .iter()
                .find(|(f, p)| *f == file.as_str() && *p == path)
            {
                found.against_used.insert(edge);
                continue;
            }
            found.violations.push(format!(
                "src/{file}: `crate::{path}`: {from} ({from_layer}) uses {to} ({to_layer})"
            ));
        }
    }
    found
}

/// The top-level module a file under `src/` belongs to.
fn module_of(file: &str) -> &str {
    let first = file.split('/').next().unwrap_or(file);
    first.strip_suffix(".rs").unwrap_or(first)
}

fn layer_of(module: &str) -> Option<&'static str> {
    LAYERS
        .iter()
        .find(|(_, modules)| modules.contains(&module))
        .map(|(layer, _)| *layer)
}

/// What `src/lib.rs` re-exports at the root, as (name, module it comes from),
/// so that `crate::PushMethod` counts as a use of `prometheus`.
fn root_reexports() -> Vec<(String, String)> {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs");
    let text =
        strip_comments_and_strings(&std::fs::read_to_string(&lib).expect("reading src/lib.rs"));
    let mut names = Vec::new();
    for statement in text.split(';') {
        let Some(at) = statement.find("pub use ") else {
            continue;
        };
        let tree = statement[at + "pub use ".len()..].trim();
        for path in use_tree(tree) {
            let path = path.strip_prefix("crate::").unwrap_or(&path);
            let module = path.split("::").next().unwrap_or("");
            let name = path.rsplit("::").next().unwrap_or("");
            if layer_of(module).is_some() {
                names.push((name.to_owned(), module.to_owned()));
            }
        }
    }
    names
}

/// Every `crate::` path in `code` (comments and strings already blanked),
/// braces expanded, `self` and renames dropped, cut after the first segment
/// that names a type or trait (`crate::prometheus::push::Reply::new` is
/// `prometheus::push::Reply`).
fn crate_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + "crate::".len()..];
        rest = after;
        if before.is_some_and(|c| c == '$' || c == '_' || c.is_alphanumeric()) {
            continue;
        }
        let (tree, _) = take_tree(after);
        paths.extend(use_tree(&tree));
    }
    paths
        .into_iter()
        .map(|p| {
            let mut cut = Vec::new();
            for seg in p.split("::") {
                cut.push(seg);
                if seg.starts_with(|c: char| c.is_uppercase()) {
                    break;
                }
            }
            cut.join("::")
        })
        .collect()
}

/// The path or use tree at the start of `s` (`a::b::{c, d::e}`), without
/// spaces, and the rest.
fn take_tree(s: &str) -> (String, &str) {
    let mut tree = String::new();
    let mut depth = 0usize;
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return (tree, &s[i..]),
            '}' => depth -= 1,
            ',' if depth > 0 => {}
            ':' => {}
            c if c.is_whitespace() && depth > 0 => {
                // `x as y` inside braces: keep a marker for the rename.
                chars.next();
                tree.push(' ');
                continue;
            }
            '*' => {}
            c if c == '_' || c.is_alphanumeric() => {}
            _ => return (tree, &s[i..]),
        }
        tree.push(c);
        chars.next();
    }
    (tree, "")
}

/// The paths of a use tree (`a::{b, c::{self, D as E}}` is `a::b`, `a::c`,
/// `a::c::D`).
fn use_tree(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split_whitespace().next().unwrap_or("");
        let path = path.strip_suffix("::self").unwrap_or(path);
        let path = path.trim_end_matches(':');
        return if path.is_empty() || path == "self" {
            Vec::new()
        } else {
            vec![path.to_owned()]
        };
    };
    let prefix = tree[..open].trim_end_matches(':');
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    let mut paths = Vec::new();
    for item in items {
        let item = item.trim();
        if item == "self" {
            paths.push(prefix.to_owned());
            continue;
        }
        for sub in use_tree(item) {
            paths.push(if prefix.is_empty() {
                sub
            } else {
                format!("{prefix}::{sub}")
            });
        }
    }
    paths
}

/// `text` with comments, string and character literals blanked (lines kept).
fn strip_comments_and_strings(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let ident = |ch: char| ch == '_' || ch.is_alphanumeric();
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (i == 0 || !ident(c[i - 1]) || (c[i - 1] == 'b' && (i < 2 || !ident(c[i - 2]))))
            && matches!(next, Some('"') | Some('#'))
        {
            let hashes = c[i + 1..].iter().take_while(|&&ch| ch == '#').count();
            if c.get(i + 1 + hashes) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let end: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let body_start = i + 2 + hashes;
            let mut j = body_start;
            while j < c.len() && !c[j..].iter().take(end.len()).copied().eq(end.chars()) {
                j += 1;
            }
            let stop = (j + end.len()).min(c.len());
            for &ch in &c[i..stop] {
                blank(&mut out, ch);
            }
            i = stop;
        } else if c[i] == '"' {
            blank(&mut out, c[i]);
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            if i < c.len() {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '\'' && (next == Some('\\') || c.get(i + 2) == Some(&'\'')) {
            // A character literal (a lifetime has no closing quote).
            blank(&mut out, c[i]);
            i += 1;
            if c.get(i) == Some(&'\\') {
                // The backslash and the character it escapes.
                for _ in 0..2 {
                    if let Some(&ch) = c.get(i) {
                        blank(&mut out, ch);
                        i += 1;
                    }
                }
            }
            while i < c.len() {
                let ch = c[i];
                blank(&mut out, ch);
                i += 1;
                if ch == '\'' {
                    break;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Every `.rs` file under `dir`, as (path under `root` with `/`, text).
fn read_sources(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_sources(root, &path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            let rel = path.strip_prefix(root).expect("under root");
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            out.push((rel, text));
        }
    }
}
