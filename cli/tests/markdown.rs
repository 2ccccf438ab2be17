//! `compare --format markdown`, read back with a GitHub-flavoured markdown
//! parser (pulldown-cmark, tables on): golden output; every cell where it
//! belongs (a malformed table, or a name that splits a cell, reads back as
//! other cells); regressions first, the unchanged collapsed in `<details>`;
//! no link, whatever the names; `--each` over several runs a side, and
//! `--fail-on-regression`'s exit status.

use std::path::Path;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use serde_json::Value;

mod common;
use common::{fixture, runmetrics, scaled, stdout};

/// What a GFM reader sees of the page.
#[derive(Debug, Default)]
struct Page {
    /// Each table: its header, then its rows, each cell's text.
    tables: Vec<Vec<Vec<String>>>,
    /// Of each table, whether it is inside `<details>`.
    collapsed: Vec<bool>,
    /// The first paragraph's text.
    summary: String,
    links: usize,
}

fn read(md: &str) -> Page {
    let mut page = Page::default();
    let (mut in_details, mut row, mut cell, mut paragraphs) =
        (false, Vec::new(), None::<String>, 0);
    let mut in_para = false;
    for e in Parser::new_ext(md, Options::ENABLE_TABLES) {
        match e {
            Event::Start(Tag::Table(_)) => {
                page.tables.push(Vec::new());
                page.collapsed.push(in_details);
            }
            Event::Start(Tag::TableCell) => cell = Some(String::new()),
            Event::End(TagEnd::TableCell) => row.push(cell.take().unwrap()),
            Event::End(TagEnd::TableHead | TagEnd::TableRow) => page
                .tables
                .last_mut()
                .unwrap()
                .push(std::mem::take(&mut row)),
            Event::Start(Tag::Paragraph) => {
                paragraphs += 1;
                in_para = paragraphs == 1;
            }
            Event::End(TagEnd::Paragraph) => in_para = false,
            Event::Start(Tag::Link { .. }) | Event::Start(Tag::Image { .. }) => page.links += 1,
            Event::Text(t) | Event::Code(t) => {
                if let Some(c) = cell.as_mut() {
                    c.push_str(&t);
                } else if in_para {
                    page.summary.push_str(&t);
                }
            }
            Event::Html(h) | Event::InlineHtml(h) => {
                if h.contains("<details>") {
                    in_details = true;
                }
                if h.contains("</details>") {
                    in_details = false;
                }
            }
            _ => {}
        }
    }
    page
}

const HEADER: [&str; 9] = [
    "name",
    "kind",
    "base p50",
    "new p50",
    "base p99",
    "new p99",
    "change (p50)",
    "verdict",
    "within noise",
];

#[test]
fn the_table_reads_back_cell_by_cell_and_matches_its_golden() {
    let o = runmetrics(&[
        "compare",
        "--format",
        "markdown",
        "tests/fixtures/base.json",
        "tests/fixtures/new.json",
    ]);
    assert!(o.status.success());
    let md = stdout(&o);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/compare.md");
    if std::env::var_os("RUNMETRICS_BLESS").is_some() {
        std::fs::write(&path, &md).unwrap();
    }
    assert_eq!(
        md,
        std::fs::read_to_string(&path).unwrap_or_default(),
        "compare.md changed; if on purpose, RUNMETRICS_BLESS=1 cargo test"
    );
    let page = read(&md);
    assert_eq!(page.links, 0);
    assert!(
        page.summary
            .starts_with("runmetrics compare: 1 regressed, 1 unchanged, 1 new, 1 gone"),
        "{}",
        page.summary
    );
    assert_eq!(page.tables.len(), 2, "{page:?}");
    assert_eq!(page.collapsed, [false, true]);
    for t in &page.tables {
        assert_eq!(t[0], HEADER);
        for r in t {
            assert_eq!(r.len(), HEADER.len(), "{r:?}");
        }
    }
    // The regression first, then the new and the gone.
    let changed = &page.tables[0];
    assert_eq!(
        changed[1],
        [
            "pipeline/grounding",
            "phase",
            "20.00 ms",
            "24.00 ms",
            "21.50 ms",
            "25.80 ms",
            "+20.0 %",
            "regressed",
            "-"
        ]
    );
    let verdicts: Vec<&str> = changed[1..].iter().map(|r| r[7].as_str()).collect();
    assert_eq!(verdicts, ["regressed", "new", "gone"]);
    let same = &page.tables[1];
    assert_eq!(same.len(), 2);
    assert_eq!(same[1][0], "inference/infer_step");
    assert_eq!(same[1][7], "unchanged");
}

#[test]
fn hostile_names_stay_in_their_cell_and_make_no_link() {
    let names = [
        "a|b|c",
        "tick`s``here",
        "[click](https://example.com)",
        "www.example.com",
        "https://example.com/x",
        "<b>bold</b> *em* _u_",
        "line\nbreak",
        "`",
        " ",
    ];
    let dir = tempfile::tempdir().unwrap();
    let base: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("base.json")).unwrap()).unwrap();
    let mut run = base.clone();
    let phase = run["meta"]["phase_durations_seconds_total"][0].clone();
    let list: Vec<Value> = names
        .iter()
        .map(|n| {
            let mut p = phase.clone();
            p["module"] = Value::from("");
            p["phase"] = Value::from(*n);
            p
        })
        .collect();
    run["meta"]["phase_durations_seconds_total"] = Value::from(list);
    let path = dir.path().join("hostile.json");
    std::fs::write(&path, run.to_string()).unwrap();
    let p = path.to_str().unwrap();
    let o = runmetrics(&["compare", "--format", "markdown", p, p]);
    assert!(o.status.success());
    let page = read(&stdout(&o));
    assert_eq!(page.links, 0, "{}", stdout(&o));
    let table = &page.tables[page.tables.len() - 1];
    let phases: Vec<&Vec<String>> = table[1..].iter().filter(|r| r[1] == "phase").collect();
    let mut got: Vec<&str> = phases.iter().map(|r| r[0].as_str()).collect();
    for r in &phases {
        assert_eq!(r.len(), HEADER.len());
        assert_eq!(r[7], "unchanged", "{r:?}");
    }
    got.sort();
    let mut want: Vec<String> = names.iter().map(|n| n.replace('\n', " ")).collect();
    want.sort();
    // A code span strips one space each side of a padded body.
    let trimmed = |s: &str| s.trim().to_owned();
    assert_eq!(
        got.iter().map(|s| trimmed(s)).collect::<Vec<_>>(),
        want.iter().map(|s| trimmed(s)).collect::<Vec<_>>(),
        "{}",
        stdout(&o)
    );
}

/// `run<i>.json` in `dir/<side>-<i>/bench.json`, grounding's durations
/// scaled by `scales[i]`.
fn runs(dir: &Path, side: &str, scales: &[f64]) {
    let base: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("base.json")).unwrap()).unwrap();
    for (i, scale) in scales.iter().enumerate() {
        let run = scaled(&base, *scale);
        let d = dir.join(format!("{side}-{i}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("bench.json"), run.to_string()).unwrap();
        std::fs::write(d.join("other.json"), base.to_string()).unwrap();
    }
}

#[test]
fn each_over_globs_of_directories_judges_noise_and_fails_on_a_regression() {
    let dir = tempfile::tempdir().unwrap();
    runs(dir.path(), "base", &[1.0, 1.01, 0.99]);
    runs(dir.path(), "slow", &[1.2, 1.21, 1.19]);
    runs(dir.path(), "noisy", &[1.0, 1.6, 1.1]);
    let side = |s: &str| format!("{}/{s}-*", dir.path().display());
    let compare = |new: &str| {
        runmetrics(&[
            "compare",
            "--each",
            "--format",
            "markdown",
            "--fail-on-regression",
            &side("base"),
            &side(new),
        ])
    };
    let o = compare("slow");
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let page = read(&stdout(&o));
    assert_eq!(page.links, 0);
    assert!(
        page.summary.contains("1 regressed") && page.summary.contains("in 2 benchmarks"),
        "{}",
        page.summary
    );
    let first = &page.tables[0][1];
    assert_eq!(first[0], "bench.json");
    assert_eq!(first[1], "pipeline/grounding");
    assert_eq!(first[8], "regressed");
    assert_eq!(
        first[9], "no",
        "three runs a side: judged against their spread"
    );

    let o = compare("noisy");
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let page = read(&stdout(&o));
    assert!(page.summary.contains("0 regressed"), "{}", page.summary);
    let collapsed = page.tables.last().unwrap();
    let grounding = collapsed[1..]
        .iter()
        .find(|r| r[0] == "bench.json" && r[1] == "pipeline/grounding")
        .unwrap();
    assert_eq!(
        (grounding[8].as_str(), grounding[9].as_str()),
        ("within noise", "yes")
    );
}
