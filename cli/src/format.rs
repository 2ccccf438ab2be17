//! Text output: durations in readable units, percentages, and tables with
//! aligned columns.

/// Seconds in the unit that suits them, with 4 significant digits or so:
/// `377.0 ns`, `15.00 µs`, `100.4 ms`, `1.234 s`.
pub fn seconds(s: f64) -> String {
    if s == 0.0 {
        return "0".to_owned();
    }
    let (v, unit) = match s.abs() {
        a if a < 1e-6 => (s * 1e9, "ns"),
        a if a < 1e-3 => (s * 1e6, "µs"),
        a if a < 1.0 => (s * 1e3, "ms"),
        _ => (s, "s"),
    };
    match v.abs() {
        a if a >= 100.0 => format!("{v:.1} {unit}"),
        a if a >= 10.0 => format!("{v:.2} {unit}"),
        _ => format!("{v:.3} {unit}"),
    }
}

/// An optional duration; `-` when the file does not have it.
pub fn maybe_seconds(s: Option<f64>) -> String {
    s.map_or_else(|| "-".to_owned(), seconds)
}

/// A signed change in percent: `+20.1 %`, `-3.0 %`.
pub fn change(fraction: f64) -> String {
    format!("{:+.1} %", fraction * 100.0)
}

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// Rows of cells printed with each column as wide as its widest cell.
pub struct Table {
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table of these columns: the first (the name) aligned left, the
    /// figures right.
    pub fn new(header: &[&str]) -> Table {
        let mut align = vec![Align::Right; header.len()];
        if let Some(first) = align.first_mut() {
            *first = Align::Left;
        }
        Table {
            align,
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Aligns these columns (of text, not figures) left too.
    pub fn left_aligned(mut self, columns: &[usize]) -> Table {
        for &c in columns {
            self.align[c] = Align::Left;
        }
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.len() < 2
    }

    pub fn render(&self, out: &mut String) {
        let columns = self.align.len();
        let width: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c > 0 {
                    line.push_str("  ");
                }
                let pad = width[c].saturating_sub(cell.chars().count());
                match self.align[c] {
                    Align::Left => {
                        line.push_str(cell);
                        line.push_str(&" ".repeat(pad));
                    }
                    Align::Right => {
                        line.push_str(&" ".repeat(pad));
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(seconds(3.77e-7), "377.0 ns");
        assert_eq!(seconds(1.5e-5), "15.00 µs");
        assert_eq!(seconds(0.100422), "100.4 ms");
        assert_eq!(seconds(1.2345), "1.234 s");
        assert_eq!(seconds(0.0), "0");
        assert_eq!(change(0.2012), "+20.1 %");
        assert_eq!(change(-0.03), "-3.0 %");
    }
}
