//! `compare --format markdown`: the comparison as GitHub-flavoured
//! markdown a pull request shows as is: a one-line summary, the rows that
//! changed (regressions first, the largest first), then the unchanged ones
//! in a collapsed `<details>` section. No links: every name is a code span,
//! which markdown never turns into one.

use crate::compare::{Comparison, Pairs, Row, Verdict};
use crate::format::{change, maybe_seconds};

/// How a row sorts: regressions first, then improvements, new, gone;
/// unchanged and within-noise rows go in the collapsed section.
fn rank(v: Verdict) -> Option<u8> {
    match v {
        Verdict::Regressed => Some(0),
        Verdict::Improved => Some(1),
        Verdict::New => Some(2),
        Verdict::Gone => Some(3),
        Verdict::Unchanged | Verdict::Noise => None,
    }
}

/// `s` as an inline code span that survives a table cell: a fence longer
/// than any run of backticks in it, `|` escaped (GFM splits cells first),
/// line breaks as spaces.
fn code(s: &str) -> String {
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let body: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('|', "\\|");
    let pad = if body.starts_with('`') || body.ends_with('`') || body.trim().is_empty() {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{body}{pad}{fence}")
}

fn verdict(r: &Row) -> String {
    match r.verdict {
        Verdict::Regressed => "**regressed**".to_owned(),
        v => v.name().to_owned(),
    }
}

/// `yes`, `no`, or `-` with no spread to judge by (fewer than two runs a
/// side).
fn noise(r: &Row) -> &'static str {
    match r.within_noise {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

/// One table's header, for the metric the verdicts are on; with a first
/// column naming each row's benchmark when `benchmarks`.
fn header(c: &Comparison, benchmarks: bool) -> String {
    let first = if benchmarks { "| benchmark " } else { "" };
    let align = if benchmarks { "| --- " } else { "" };
    format!(
        "{first}| name | kind | base p50 | new p50 | base p99 | new p99 | change ({}) | verdict | within noise |\n\
         {align}| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |\n",
        c.metric_name()
    )
}

fn line(bench: Option<&str>, r: &Row) -> String {
    let get = |side: &Option<crate::compare::Stats>,
               f: fn(&crate::compare::Stats) -> Option<f64>| {
        maybe_seconds(side.as_ref().and_then(f))
    };
    let first = bench.map_or(String::new(), |b| format!("| {} ", code(b)));
    format!(
        "{first}| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        code(&r.label()),
        r.key.0.name(),
        get(&r.base, |s| s.p50),
        get(&r.new, |s| s.p50),
        get(&r.base, |s| s.p99),
        get(&r.new, |s| s.p99),
        r.change.map_or("-".to_owned(), change),
        verdict(r),
        noise(r),
    )
}

/// The rows of several comparisons (one per benchmark, or one alone).
fn render(parts: &[(Option<&str>, &Comparison)], summary: String, tail: &str) -> String {
    let Some((_, first)) = parts.first() else {
        return format!("{summary}\n");
    };
    let benchmarks = parts.iter().any(|(b, _)| b.is_some());
    let mut changed: Vec<(Option<&str>, &Row)> = Vec::new();
    let mut same: Vec<(Option<&str>, &Row)> = Vec::new();
    for (bench, c) in parts {
        for r in c.rows() {
            match rank(r.verdict) {
                Some(_) => changed.push((*bench, r)),
                None => same.push((*bench, r)),
            }
        }
    }
    // Regressions first, each group by the size of its change, largest first.
    changed.sort_by(|a, b| {
        let key = |r: &Row| (rank(r.verdict), -r.change.map_or(0.0, f64::abs));
        let (ka, kb) = (key(a.1), key(b.1));
        ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
    });
    let mut out = format!("{summary}\n\n");
    if changed.is_empty() {
        out.push_str("Nothing changed beyond the threshold.\n");
    } else {
        out.push_str(&header(first, benchmarks));
        for (b, r) in &changed {
            out.push_str(&line(*b, r));
        }
    }
    if !same.is_empty() {
        out.push_str(&format!(
            "\n<details><summary>{} unchanged or within noise</summary>\n\n",
            same.len()
        ));
        out.push_str(&header(first, benchmarks));
        for (b, r) in &same {
            out.push_str(&line(*b, r));
        }
        out.push_str("\n</details>\n");
    }
    out.push_str(tail);
    out
}

/// The counts of a set of rows, as the summary gives them.
fn counts<'a>(rows: impl Iterator<Item = &'a Row>) -> String {
    let mut n = [0usize; 6];
    for r in rows {
        n[r.verdict as usize] += 1;
    }
    let names = [
        "improved",
        "regressed",
        "unchanged",
        "within noise",
        "new",
        "gone",
    ];
    let mut parts = vec![format!("**{} regressed**", n[Verdict::Regressed as usize])];
    for v in [
        Verdict::Improved,
        Verdict::Unchanged,
        Verdict::Noise,
        Verdict::New,
        Verdict::Gone,
    ] {
        if n[v as usize] > 0 {
            parts.push(format!("{} {}", n[v as usize], names[v as usize]));
        }
    }
    parts.join(", ")
}

fn settings(c: &Comparison) -> String {
    format!(
        "verdicts on {} with a {:.1} % threshold{}",
        c.metric_name(),
        c.threshold() * 100.0,
        if c.has_spread() {
            " and the runs' spread"
        } else {
            ""
        }
    )
}

/// One comparison (BASE against NEW, each side's runs merged).
pub fn comparison(c: &Comparison) -> String {
    let (b, n) = c.runs();
    let summary = format!(
        "**runmetrics compare**: {} ({}; {b} base run{}, {n} new)",
        counts(c.rows().iter()),
        settings(c),
        if b == 1 { "" } else { "s" },
    );
    render(&[(None, c)], summary, "")
}

/// `--each`: one table over every benchmark.
pub fn pairs(p: &Pairs) -> String {
    let parts: Vec<(Option<&str>, &Comparison)> = p
        .compared()
        .iter()
        .map(|(n, c)| (Some(n.as_str()), c))
        .collect();
    let summary = match parts.first() {
        Some((_, c)) => format!(
            "**runmetrics compare**: {} in {} benchmark{} ({})",
            counts(parts.iter().flat_map(|(_, c)| c.rows())),
            parts.len(),
            if parts.len() == 1 { "" } else { "s" },
            settings(c)
        ),
        None => "**runmetrics compare**: no benchmark in common".to_owned(),
    };
    let mut tail = String::new();
    for (side, names) in [("base", p.only_base()), ("new", p.only_new())] {
        if !names.is_empty() {
            let names: Vec<String> = names.iter().map(|n| code(n)).collect();
            tail.push_str(&format!("\nOnly in {side}: {}.\n", names.join(", ")));
        }
    }
    render(&parts, summary, &tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_stays_one_code_span() {
        assert_eq!(code("a/b"), "`a/b`");
        assert_eq!(code("a|b"), "`a\\|b`");
        assert_eq!(code("x `y` z"), "``x `y` z``");
        assert_eq!(code("`x"), "`` `x ``");
        assert_eq!(code("a\nb"), "`a b`");
    }
}
