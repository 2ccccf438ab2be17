//! Hand-written SVG charts for the HTML report: a line chart over time, a
//! latency histogram on a log axis, grouped bars and a timeline with one
//! lane per thread. A few small functions cost less to build and read than a
//! plotting crate.

use std::fmt::Write;

/// (x, y) points of a line.
pub type Points = Vec<(f64, f64)>;
/// A named, coloured line.
pub type Line<'a> = (&'a str, &'a str, Points);
/// A named, coloured set of run-file histogram buckets (lower ns, count).
pub type Buckets<'a> = (&'a str, &'a str, &'a [crate::run_file::Bucket]);

pub const BLUE: &str = "#1f77b4";
pub const ORANGE: &str = "#ff7f0e";
const PALETTE: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

const WIDTH: f64 = 860.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 36.0;

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A colour for the n-th of several series.
pub fn colour(n: usize) -> &'static str {
    PALETTE[n % PALETTE.len()]
}

fn open(s: &mut String, id: &str, height: f64, title: &str) {
    let _ = writeln!(
        s,
        r#"<svg id="{id}" class="plot" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{}</text>"#,
        escape(title)
    );
}

/// The n-th entry of the legend, top right.
fn legend(s: &mut String, n: usize, label: &str, colour: &str) {
    let lx = WIDTH - RIGHT - 180.0 + n as f64 * 90.0;
    let _ = writeln!(
        s,
        r#"<rect x="{lx}" y="6" width="10" height="10" fill="{colour}"/><text x="{}" y="15">{}</text>"#,
        lx + 14.0,
        escape(label)
    );
}

/// Horizontal grid lines at `ticks`, labelled on the left with `suffix`.
fn y_grid(s: &mut String, ticks: &[f64], y: impl Fn(f64) -> f64, suffix: &str) {
    for &t in ticks {
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy}" y2="{yy}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}{suffix}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y(t) + 4.0,
            number(t),
            yy = y(t),
        );
    }
}

/// Vertical grid lines at `ticks` in a chart `height` high, labelled below.
fn x_grid(
    s: &mut String,
    ticks: &[f64],
    x: impl Fn(f64) -> f64,
    height: f64,
    label: impl Fn(f64) -> String,
) {
    for &t in ticks {
        let _ = writeln!(
            s,
            r##"<line x1="{xx}" x2="{xx}" y1="{TOP}" y2="{}" stroke="#ddd"/><text x="{xx}" y="{}" text-anchor="middle">{}</text>"##,
            height - BOTTOM,
            height - BOTTOM + 16.0,
            label(t),
            xx = x(t),
        );
    }
}

/// Round numbers for an axis from 0 to at least `max`.
fn ticks(max: f64) -> (f64, Vec<f64>) {
    if max <= 0.0 || !max.is_finite() {
        return (1.0, vec![0.0, 1.0]);
    }
    let raw = max / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let top = (max / step).ceil() * step;
    let n = (top / step).round() as usize;
    (top, (0..=n).map(|i| i as f64 * step).collect())
}

fn number(v: f64) -> String {
    if v == 0.0 {
        "0".to_owned()
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Lines of (x, y) points; x in seconds since the start.
pub fn lines(id: &str, title: &str, y_label: &str, series: &[Line<'_>]) -> String {
    let height = 220.0;
    let mut s = String::new();
    open(&mut s, id, height, title);
    let x_max = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|q| q.0))
        .fold(0.0, f64::max)
        .max(1e-9);
    let y_max = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|q| q.1))
        .fold(0.0, f64::max);
    let (y_top, y_ticks) = ticks(y_max);
    let (x_top, x_ticks) = ticks(x_max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = height - TOP - BOTTOM;
    let x = |v: f64| LEFT + v / x_top * plot_w;
    let y = |v: f64| TOP + plot_h - v / y_top * plot_h;
    y_grid(&mut s, &y_ticks, y, "");
    for t in &x_ticks {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{} s</text>"#,
            x(*t),
            height - BOTTOM + 16.0,
            number(*t)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    for (n, (label, colour, points)) in series.iter().enumerate() {
        let pts: Vec<String> = points
            .iter()
            .map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{}"/>"#,
            pts.join(" ")
        );
        for p in &pts {
            let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                s,
                r#"<circle cx="{cx}" cy="{cy}" r="2.2" fill="{colour}"/>"#
            );
        }
        legend(&mut s, n, label, colour);
    }
    s.push_str("</svg>\n");
    s
}

/// Histograms of durations: `(lower bound ns, count)` buckets of each
/// series, as bars on a log-scale axis of durations, the share of each
/// series' regions on the y axis (so runs of different lengths compare).
pub fn histogram(id: &str, title: &str, series: &[Buckets<'_>]) -> String {
    let height = 200.0;
    let mut s = String::new();
    open(&mut s, id, height, title);
    let all = || series.iter().flat_map(|(_, _, b)| b.iter());
    let lo = all()
        .map(|b| b.lower_ns.max(1) as f64)
        .fold(f64::MAX, f64::min);
    let hi = all()
        .map(|b| (b.lower_ns + b.width_ns).max(1) as f64 * 1.02)
        .fold(1.0, f64::max);
    if lo == f64::MAX {
        s.push_str(r#"<text x="70" y="60">no histogram in this file</text></svg>"#);
        return s;
    }
    let (lo, hi) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = height - TOP - BOTTOM;
    let x = |ns: f64| LEFT + (ns.max(1.0).log10() - lo) / (hi - lo) * plot_w;
    let share_max = series
        .iter()
        .map(|(_, _, b)| {
            let n = crate::run_file::histogram_total(b).unwrap_or(u64::MAX);
            b.iter().map(|x| density(x, n)).fold(0.0, f64::max)
        })
        .fold(0.0, f64::max);
    let (top, y_ticks) = ticks(share_max * 100.0);
    let y = |pct: f64| TOP + plot_h - pct / top * plot_h;
    y_grid(&mut s, &y_ticks, y, " %");
    for d in lo as i32..=hi as i32 {
        let ns = 10f64.powi(d);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            x(ns),
            height - BOTTOM + 16.0,
            crate::format::seconds(ns / 1e9)
        );
    }
    let bar_w = |b: &crate::run_file::Bucket| {
        let lower = b.lower_ns as f64;
        (x(lower + b.width_ns as f64) - x(lower)).max(1.5)
    };
    for (n, (label, colour, buckets)) in series.iter().enumerate() {
        let total = crate::run_file::histogram_total(buckets).unwrap_or(u64::MAX);
        for b in buckets.iter() {
            let (lower, count) = (b.lower_ns, b.count);
            let pct = 100.0 * density(b, total);
            let _ = writeln!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}" fill-opacity="0.6"><title>{}: {} in [{}, ...)</title></rect>"#,
                x(lower.max(1) as f64),
                y(pct),
                bar_w(b),
                TOP + plot_h - y(pct),
                escape(label),
                count,
                crate::format::seconds(lower as f64 / 1e9),
            );
        }
        legend(&mut s, n, label, colour);
    }
    s.push_str("</svg>\n");
    s
}

/// A bucket's share of `total` regions, per 1/128 of a power of two of
/// duration: buckets of unequal (relative) widths then draw a smooth
/// distribution as smooth, where raw shares would saw between wide and
/// narrow ones.
fn density(b: &crate::run_file::Bucket, total: u64) -> f64 {
    let share = b.count as f64 / total.max(1) as f64;
    let lower = b.lower_ns.max(1) as f64;
    let octaves = ((lower + b.width_ns as f64) / lower).log2();
    share / (octaves * 128.0).max(f64::MIN_POSITIVE)
}

/// Grouped horizontal bars: for each label, one bar per series, on a
/// linear axis of seconds.
pub fn bars(id: &str, title: &str, series: &[(&str, &str)], rows: &[(String, Vec<f64>)]) -> String {
    let bar = 10.0;
    let group = bar * series.len() as f64 + 8.0;
    let left = 230.0;
    let height = TOP + group * rows.len() as f64 + BOTTOM;
    let mut s = String::new();
    open(&mut s, id, height, title);
    let max = rows
        .iter()
        .flat_map(|r| r.1.iter().copied())
        .fold(0.0, f64::max);
    let (top, x_ticks) = ticks(max);
    let plot_w = WIDTH - left - RIGHT;
    let x = |v: f64| left + v / top * plot_w;
    x_grid(&mut s, &x_ticks, x, height, crate::format::seconds);
    for (i, (label, values)) in rows.iter().enumerate() {
        let gy = TOP + i as f64 * group;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6.0,
            gy + group / 2.0 + 2.0,
            escape(label)
        );
        for (j, v) in values.iter().enumerate() {
            let _ = writeln!(
                s,
                r#"<rect x="{left}" y="{:.1}" width="{:.1}" height="{bar}" fill="{}"><title>{}: {}</title></rect>"#,
                gy + j as f64 * bar,
                (x(*v) - left).max(0.5),
                series[j].1,
                escape(series[j].0),
                crate::format::seconds(*v)
            );
        }
    }
    for (n, (label, colour)) in series.iter().enumerate() {
        legend(&mut s, n, label, colour);
    }
    s.push_str("</svg>\n");
    s
}

/// One lane per thread; each span `(lane, start s, end s, name)` a bar
/// coloured by its name.
pub fn timeline(
    id: &str,
    title: &str,
    lanes: &[String],
    spans: &[(usize, f64, f64, &str)],
    seconds: f64,
) -> String {
    let lane_h = 18.0;
    let left = 120.0;
    let height = TOP + lane_h * lanes.len().max(1) as f64 + BOTTOM;
    let mut s = String::new();
    open(&mut s, id, height, title);
    let (top, x_ticks) = ticks(seconds.max(1e-9));
    let plot_w = WIDTH - left - RIGHT;
    let x = |v: f64| left + v / top * plot_w;
    x_grid(&mut s, &x_ticks, x, height, |t| format!("{} s", number(t)));
    for (i, lane) in lanes.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6.0,
            TOP + i as f64 * lane_h + 13.0,
            escape(lane)
        );
    }
    let mut names: Vec<&str> = spans.iter().map(|sp| sp.3).collect();
    names.sort_unstable();
    names.dedup();
    for &(lane, start, end, name) in spans {
        let c = colour(names.binary_search(&name).unwrap_or(0));
        let _ = writeln!(
            s,
            r#"<rect x="{:.2}" y="{:.1}" width="{:.2}" height="{}" fill="{c}"><title>{}: {}</title></rect>"#,
            x(start),
            TOP + lane as f64 * lane_h + 2.0,
            (x(end) - x(start)).max(0.6),
            lane_h - 4.0,
            escape(name),
            crate::format::seconds(end - start)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(ticks(97.5), (100.0, vec![0.0, 25.0, 50.0, 75.0, 100.0]));
        assert_eq!(ticks(2.0).0, 2.0);
        assert_eq!(ticks(0.0), (1.0, vec![0.0, 1.0]));
    }
}
