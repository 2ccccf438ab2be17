//! The plot of ns/region by thread count: hand-written SVG (a few dozen
//! lines, smaller than a plotting crate), horizontal bars on a log scale,
//! one bar per thread count for each contender.

use std::fmt::Write;

use crate::contenders::{all, Kind};
use crate::Cell;

const WIDTH: f64 = 900.0;
const LEFT: f64 = 220.0;
const RIGHT: f64 = 70.0;
const TOP: f64 = 64.0;
const BAR: f64 = 11.0;
const GAP: f64 = 9.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn plot(cells: &[Cell], counts: &[usize]) -> String {
    let contenders = all();
    let finite = || {
        cells
            .iter()
            .map(|c| c.ns)
            .filter(|ns| ns.is_finite() && *ns > 0.0)
    };
    let lo = finite().fold(f64::MAX, f64::min).max(0.01).log10().floor();
    let hi = finite().fold(1.0, f64::max).log10().ceil();
    let x =
        |ns: f64| LEFT + (ns.max(10f64.powf(lo)).log10() - lo) / (hi - lo) * (WIDTH - LEFT - RIGHT);
    let group = BAR * counts.len() as f64 + GAP;
    let height = TOP + group * contenders.len() as f64 + 40.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="18" font-size="14" font-weight="bold">ns per timed region, per thread (log scale; lower is better)</text>"#
    );
    for (i, t) in counts.iter().enumerate() {
        let lx = LEFT + i as f64 * 110.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="30" width="12" height="12" fill="{}"/><text x="{}" y="40">{t} thread(s)</text>"#,
            COLOURS[i % COLOURS.len()],
            lx + 16.0
        );
    }
    // Decade grid lines with their labels.
    let bottom = height - 34.0;
    for d in lo as i32..=hi as i32 {
        let ns = 10f64.powi(d);
        let gx = x(ns);
        let label = if ns < 1.0 {
            format!("{ns}")
        } else {
            format!("{ns:.0}")
        };
        let _ = writeln!(
            s,
            r##"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{bottom}" stroke="#ddd"/><text x="{gx:.1}" y="{}" text-anchor="middle">{label} ns</text>"##,
            bottom + 14.0
        );
    }
    for (row, contender) in contenders.iter().enumerate() {
        let y0 = TOP + row as f64 * group;
        let weight = if contender.kind == Kind::Runmetrics {
            "bold"
        } else {
            "normal"
        };
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end" font-weight="{weight}">{}</text>"#,
            LEFT - 6.0,
            y0 + group / 2.0,
            escape(contender.name)
        );
        for (i, &t) in counts.iter().enumerate() {
            let Some(cell) = cells
                .iter()
                .find(|c| c.contender.name == contender.name && c.threads == t)
            else {
                continue;
            };
            let y = y0 + i as f64 * BAR;
            let w = (x(cell.ns) - LEFT).max(1.0);
            let _ = writeln!(
                s,
                r#"<rect x="{LEFT}" y="{y:.1}" width="{w:.1}" height="{}" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="9">{:.1}</text>"#,
                BAR - 1.0,
                COLOURS[i % COLOURS.len()],
                LEFT + w + 3.0,
                y + BAR - 2.5,
                cell.ns
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
