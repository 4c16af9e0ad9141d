//! Plain-text tables and byte sizes for `vgpuctl`'s human output.
//!
//! Layout is `comfy-table`'s, drawn without borders or lines: columns two
//! spaces apart, numeric columns right-aligned, no trailing blanks.

use comfy_table::presets::NOTHING;
use comfy_table::CellAlignment;

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

/// A table: a header row and rows of cells, one cell per header column.
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

    /// Adds a row: as many cells as the header has columns.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(
            cells.len(),
            self.header.len(),
            "a row of {:?} does not match the header {:?}",
            cells,
            self.header
        );
        self.rows.push(cells);
    }

    /// The rows (by index) whose cell count differs from the header's.
    #[cfg(test)]
    pub fn ragged_rows(&self) -> Vec<usize> {
        (0..self.rows.len())
            .filter(|&i| self.rows[i].len() != self.header.len())
            .collect()
    }

    /// The column names.
    #[cfg(test)]
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// Whether every cell of column `i` is a figure (a digit first, or `-`
    /// for none): such columns are right-aligned, header included.
    fn numeric(&self, i: usize) -> bool {
        !self.rows.is_empty()
            && self.rows.iter().all(|r| {
                r.get(i).is_some_and(|c| {
                    c == "-" || c.chars().next().is_some_and(|ch| ch.is_ascii_digit())
                })
            })
    }

    /// The table as text: one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let mut t = comfy_table::Table::new();
        t.load_preset(NOTHING).set_header(self.header.clone());
        for r in &self.rows {
            t.add_row(r.clone());
        }
        for i in 0..self.header.len() {
            let numeric = self.numeric(i);
            if let Some(c) = t.column_mut(i) {
                c.set_padding((if i == 0 { 0 } else { 2 }, 0));
                if numeric {
                    c.set_cell_alignment(CellAlignment::Right);
                }
            }
        }
        let mut out = String::new();
        for line in t.lines() {
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
        assert_eq!(lines.len(), 3);
        assert!(t.ragged_rows().is_empty());
    }

    #[test]
    fn text_columns_stay_left_and_empty_tables_show_their_header() {
        let mut t = Table::new(&["owner", "state", "busy"]);
        assert_eq!(t.render(), "owner  state  busy\n");
        t.row(vec!["vm1".into(), "dontneed".into(), "no".into()]);
        t.row(vec!["vm1/ctx1:mesa".into(), "-".into(), "yes".into()]);
        assert_eq!(
            t.render(),
            "owner          state     busy\n\
             vm1            dontneed  no\n\
             vm1/ctx1:mesa  -         yes\n"
        );
    }

    #[test]
    fn a_row_that_does_not_match_the_header_is_found() {
        let mut t = Table::new(&["a", "b"]);
        t.rows.push(vec!["1".into()]);
        t.rows.push(vec!["1".into(), "2".into()]);
        t.rows.push(vec!["1".into(), "2".into(), "3".into()]);
        assert_eq!(t.ragged_rows(), [0, 2]);
    }
}
