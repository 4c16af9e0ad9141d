//! Plain-text tables and byte sizes for `vgpuctl`'s human output.

/// Bytes as a short binary-unit figure: `0`, `4.0K`, `1.5M`, `2.0G`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if n < 1024 {
        return n.to_string();
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1}{}", UNITS[unit])
}

/// An optional limit.
pub fn limit(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), bytes)
}

/// A table: a header row and rows, printed with aligned columns (numbers
/// right-aligned).
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let numeric = |i: usize| {
            !self.rows.is_empty()
                && self.rows.iter().all(|r| {
                    r.get(i).is_some_and(|c| {
                        c == "-" || c.chars().next().is_some_and(|ch| ch.is_ascii_digit())
                    })
                })
        };
        let right: Vec<bool> = (0..cols).map(numeric).collect();
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let c = r.get(i).map_or("", String::as_str);
                if i > 0 {
                    line.push_str("  ");
                }
                if right[i] {
                    line.push_str(&format!("{c:>w$}"));
                } else {
                    line.push_str(&format!("{c:<w$}"));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(0), "0");
        assert_eq!(bytes(4096), "4.0K");
        assert_eq!(bytes(3 << 19), "1.5M");
        assert_eq!(bytes(1 << 30), "1.0G");
        assert_eq!(limit(None), "-");
    }

    #[test]
    fn columns_align() {
        let mut t = Table::new(&["name", "size"]);
        t.row(vec!["vm1".into(), "4.0K".into()]);
        t.row(vec!["vm10/ctx1".into(), "12.0M".into()]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "name        size");
        assert_eq!(lines[1], "vm1         4.0K");
        assert_eq!(lines[2], "vm10/ctx1  12.0M");
    }
}
