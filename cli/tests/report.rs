//! `runmetrics report` in a real browser: Debian's headless Chromium loads
//! the page from disk (nothing else is reachable to it), every plot has a
//! size once laid out, and a screenshot is taken. Without Chromium the test
//! says NOT RUN, and fails under `scripts/test` (RUNMETRICS_REQUIRE_SERVERS=1),
//! which installs it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        });
    if found.is_none() {
        let msg =
            "chromium is not installed: apt-get install chromium (scripts/test does, as root)";
        if std::env::var_os("RUNMETRICS_REQUIRE_SERVERS").is_some() {
            panic!("{msg}");
        }
        eprintln!("NOT RUN: {msg}");
    }
    found
}

fn headless(browser: &Path, profile: &Path, args: &[&str]) -> std::process::Output {
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--window-size=1000,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs")
}

#[test]
fn the_report_renders_its_plots_in_chromium() {
    let Some(browser) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let o = Command::new(env!("CARGO_BIN_EXE_runmetrics"))
        .arg("report")
        .arg(fixtures.join("new.json"))
        .arg(fixtures.join("base.json"))
        .arg("-o")
        .arg(&page)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    let plots = html.matches("class=\"plot\"").count();
    assert_eq!(
        plots, 8,
        "CPU, RSS, two comparison bars, three distributions, the timeline"
    );

    let url = format!("file://{}", page.display());
    let o = headless(&browser, &dir.path().join("profile"), &["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&o.stdout);
    let rendered = dom
        .split("data-plots-rendered=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| {
            panic!(
                "the page's script did not run: {}\n{}",
                &dom[..dom.len().min(500)],
                String::from_utf8_lossy(&o.stderr)
            )
        });
    assert_eq!(
        rendered,
        plots.to_string(),
        "every plot laid out with a size"
    );

    let shot = dir.path().join("report.png");
    let arg = format!("--screenshot={}", shot.display());
    let o = headless(&browser, &dir.path().join("profile"), &[&arg, &url]);
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (1000, 2400));
    // A blank page compresses to a few KiB; plots and text do not.
    assert!(png.len() > 40_000, "{} bytes", png.len());
}
