//! The benches' plots: hand-written SVG (no plotting crate), panels side
//! by side, each a set of curves over a log-scaled x axis (the number of
//! names), its y axis from 0.

/// A curve: its label, its colour, and its (x, y) points.
pub type Curve<'a> = (&'a str, &'a str, Vec<(f64, f64)>);
/// A panel: its unit, its title, its curves, and a target line if any.
pub type Panel<'a> = (&'a str, &'a str, Vec<Curve<'a>>, Option<f64>);

/// The panels side by side, each 360 × 240, x on a log scale from the
/// least x of every curve to the greatest (at least a decade), labelled
/// `x_label` and ticked at each x a curve has.
pub fn svg(panels: &[Panel], x_label: &str) -> String {
    let (w, h, pad) = (360.0, 240.0, 48.0);
    let xs = || {
        panels
            .iter()
            .flat_map(|p| p.2.iter())
            .flat_map(|c| c.2.iter().map(|p| p.0))
    };
    let lo = xs().fold(f64::INFINITY, f64::min).max(1e-9);
    let hi = xs().fold(lo * 10.0, f64::max);
    let x = |n: f64, left: f64| {
        let (lo, hi) = (lo.log10(), hi.log10());
        left + pad + (n.log10() - lo) / (hi - lo).max(1e-9) * (w - 2.0 * pad)
    };
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n",
        panels.len() as f64 * w
    );
    let sizes: Vec<f64> = {
        let mut v: Vec<f64> = xs().collect();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v
    };
    for (i, (unit, title, series, target)) in panels.iter().enumerate() {
        let left = i as f64 * w;
        let top = series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1))
            .chain(*target)
            .fold(1e-9, f64::max)
            * 1.1;
        let y = |v: f64| h - pad - v / top * (h - 2.0 * pad);
        out += &format!(
            "<text x=\"{}\" y=\"16\">{title}</text>\n<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{}\" y1=\"{pad}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n",
            left + pad,
            left + pad,
            h - pad,
            left + w - pad,
            h - pad,
            left + pad,
            left + pad,
            h - pad
        );
        for k in 0..=4 {
            let v = top * k as f64 / 4.0;
            out += &format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v:.1}</text>\n",
                left + pad - 4.0,
                y(v) + 4.0
            );
        }
        out += &format!(
            "<text x=\"{}\" y=\"{}\">{unit}</text>\n",
            left + 4.0,
            pad - 8.0
        );
        for &n in &sizes {
            out += &format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{n}</text>\n",
                x(n, left),
                h - pad + 14.0,
            );
        }
        if let Some(t) = target {
            out += &format!(
                "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"gray\" stroke-dasharray=\"4 3\"/>\n<text x=\"{}\" y=\"{}\" fill=\"gray\" text-anchor=\"end\">target</text>\n",
                left + pad,
                left + w - pad,
                left + w - pad,
                y(*t) - 3.0,
                y = y(*t),
            );
        }
        out += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{x_label}</text>\n",
            left + w / 2.0,
            h - 8.0
        );
        for (j, (label, color, values)) in series.iter().enumerate() {
            let pts: Vec<String> = values
                .iter()
                .map(|&(n, v)| format!("{:.1},{:.1}", x(n, left), y(v)))
                .collect();
            out += &format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n<text x=\"{}\" y=\"{}\" fill=\"{color}\">{label}</text>\n",
                pts.join(" "),
                left + pad + 8.0,
                pad + 14.0 * j as f64
            );
        }
    }
    out + "</svg>\n"
}
