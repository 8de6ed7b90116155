//! How the operator subcommands show the admin API's answers to people: aligned plain-text
//! tables, and cells made safe to print (the API carries senders' event ids and bodies, and
//! destinations' error answers: a control character in them must not reach the terminal).

use serde_json::Value;

/// Cells of a listing longer than this are cut (the whole value is in `--json`); a
/// `sha256:<hex>` event id fits.
const MAX_CELL_CHARS: usize = 72;
/// Between two columns.
const GAP: &str = "  ";

/// Rows under a header, each column as wide as its widest cell.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Whether long cells are cut (in a listing, not in one item's fields).
    cut: bool,
}

impl Table {
    /// A listing with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|title| title.to_string()).collect(),
            rows: Vec::new(),
            cut: true,
        }
    }

    /// `name  value` lines, values in full.
    pub fn fields() -> Table {
        Table {
            header: Vec::new(),
            rows: Vec::new(),
            cut: false,
        }
    }

    /// Adds a row; each cell is cleaned (and in a listing cut to [`MAX_CELL_CHARS`]).
    pub fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        let cut = self.cut;
        let cells = cells.into_iter().map(|cell| {
            let cell = clean(&cell, false);
            if cut {
                shorten(cell)
            } else {
                cell
            }
        });
        self.rows.push(cells.collect());
    }

    /// The lines, each ending in a newline, without trailing spaces.
    pub fn render(&self) -> String {
        let lines: Vec<&Vec<String>> = std::iter::once(&self.header)
            .filter(|header| !header.is_empty())
            .chain(&self.rows)
            .collect();
        let columns = lines.iter().map(|line| line.len()).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|column| {
                lines
                    .iter()
                    .filter_map(|line| line.get(column))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for line in lines {
            let mut text = String::new();
            for (cell, width) in line.iter().zip(&widths) {
                text.push_str(cell);
                text.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
                text.push_str(GAP);
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table on stdout.
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// How a column's cell is made from one item of a listing.
#[derive(Clone, Copy)]
pub enum Cell {
    /// The item's field, as [`show`] prints it.
    Field(&'static str),
    /// The item's field, a number of seconds, as an [`age`].
    Age(&'static str),
    /// The item's field, milliseconds since the epoch, as a [`time_ms`].
    Time(&'static str),
    /// Made by a function of the item.
    With(fn(&Value) -> String),
}

impl Cell {
    fn of(self, item: &Value) -> String {
        match self {
            Cell::Field(key) => show(&item[key]),
            Cell::Age(key) => age(item[key].as_f64()),
            Cell::Time(key) => time_ms(item[key].as_u64()),
            Cell::With(make) => make(item),
        }
    }
}

/// A table of the items of a JSON array (none if `items` is not one), a column each.
pub fn listing(items: &Value, columns: &[(&str, Cell)]) -> Table {
    let titles: Vec<&str> = columns.iter().map(|(title, _)| *title).collect();
    let mut table = Table::new(&titles);
    for item in items.as_array().into_iter().flatten() {
        table.row(columns.iter().map(|(_, cell)| cell.of(item)));
    }
    table
}

/// `text` with every control character and bidirectional override shown as `?` (newlines and
/// tabs kept when `keep_lines`).
pub fn clean(text: &str, keep_lines: bool) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\t' if keep_lines => c,
            c if unsafe_for_terminals(c) => '?',
            c => c,
        })
        .collect()
}

/// Control characters (C0, DEL, C1: a terminal acts on them) and the bidirectional marks,
/// embeddings, overrides and isolates (they reorder what a terminal shows).
pub fn unsafe_for_terminals(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// JSON text with the characters [`unsafe_for_terminals`] escaped as `\uXXXX` (serde_json
/// writes C1 controls, DEL and bidirectional overrides as they are; in JSON text they can only
/// be inside strings, where the escape means the same).
pub fn terminal_safe_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if unsafe_for_terminals(c) && c != '\n' {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` cut to [`MAX_CELL_CHARS`].
fn shorten(text: String) -> String {
    if text.chars().count() <= MAX_CELL_CHARS {
        return text;
    }
    let mut short: String = text.chars().take(MAX_CELL_CHARS - 1).collect();
    short.push('…');
    short
}

/// A JSON value as a cell: a string as is, `null` as `-`, anything else as JSON.
pub fn show(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(text) => text.clone(),
        Value::Bool(true) => "yes".to_string(),
        Value::Bool(false) => "no".to_string(),
        other => other.to_string(),
    }
}

/// Milliseconds since the Unix epoch as an RFC 3339 time (UTC, whole seconds); `-` if absent.
pub fn time_ms(ms: Option<u64>) -> String {
    ms.and_then(|ms| {
        let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(ms / 1000).ok()?).ok()?;
        at.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_else(|| "-".to_string())
}

/// A duration in seconds, short: `45s`, `3m12s`, `2h05m`, `3d04h`; `-` if absent.
pub fn age(seconds: Option<f64>) -> String {
    let Some(seconds) = seconds.filter(|s| s.is_finite() && *s >= 0.0) else {
        return "-".to_string();
    };
    let s = seconds as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// C1 controls (CSI, U+009B, starts an escape sequence on xterm-like terminals), DEL and
    /// bidirectional overrides reached the terminal as they were: in tables, and in `--json`,
    /// where serde_json escapes only C0 controls.
    #[test]
    fn what_a_terminal_acts_on_never_reaches_it() {
        let hostile = "a\u{9b}31mb\u{7f}c\u{202e}d\u{2066}e";
        assert_eq!(clean(hostile, false), "a?31mb?c?d?e");
        let json = serde_json::to_string_pretty(&json!({ "id": hostile, "n": 1 })).unwrap();
        let safe = terminal_safe_json(&json);
        assert!(
            !safe.chars().any(|c| unsafe_for_terminals(c) && c != '\n'),
            "{safe}"
        );
        assert_eq!(serde_json::from_str::<Value>(&safe).unwrap()["id"], hostile);
        assert!(safe.contains("\\u009b"), "{safe}");
    }

    #[test]
    fn columns_are_aligned_and_lines_not_padded() {
        let mut table = Table::new(&["SEQ", "PROVIDER", "ID"]);
        table.row(["1".to_string(), "github".to_string(), "abc".to_string()]);
        table.row(["1234".to_string(), "a".to_string(), String::new()]);
        assert_eq!(
            table.render(),
            "SEQ   PROVIDER  ID\n1     github    abc\n1234  a\n"
        );
        let mut fields = Table::fields();
        fields.row(["seq".to_string(), "4".to_string()]);
        fields.row(["provider".to_string(), "github".to_string()]);
        assert_eq!(fields.render(), "seq       4\nprovider  github\n");
        assert_eq!(Table::new(&["A", "B"]).render(), "A  B\n");
    }

    #[test]
    fn listings_have_a_row_per_item() {
        let items = json!([
            {"name": "crm", "age_s": 75.0, "at_ms": 0, "n": 1},
            {"name": "wh", "age_s": null, "n": 2}
        ]);
        let columns = [
            ("NAME", Cell::Field("name")),
            ("AGE", Cell::Age("age_s")),
            ("AT", Cell::Time("at_ms")),
            (
                "N+1",
                Cell::With(|item| (item["n"].as_u64().unwrap() + 1).to_string()),
            ),
        ];
        assert_eq!(
            listing(&items, &columns).render(),
            "NAME  AGE    AT                    N+1\n\
             crm   1m15s  1970-01-01T00:00:00Z  2\n\
             wh    -      -                     3\n"
        );
        assert_eq!(
            listing(&json!(null), &columns).render(),
            "NAME  AGE  AT  N+1\n"
        );
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let mut table = Table::new(&["ID"]);
        table.row(["evil\x1b]0;pwned\x07\nnext\u{9b}".to_string()]);
        assert_eq!(table.render(), "ID\nevil?]0;pwned??next?\n");
        assert_eq!(clean("a\nb\tc\x1b", true), "a\nb\tc?");
    }

    #[test]
    fn long_cells_are_cut_in_listings_only() {
        let mut table = Table::new(&["X"]);
        table.row(["é".repeat(100)]);
        let line = table.render().lines().nth(1).unwrap().to_string();
        assert_eq!(line.chars().count(), MAX_CELL_CHARS);
        assert!(line.ends_with('…'));
        let mut fields = Table::fields();
        fields.row(["é".repeat(100)]);
        assert_eq!(fields.render(), "é".repeat(100) + "\n");
    }

    #[test]
    fn values_times_and_ages() {
        assert_eq!(show(&json!(null)), "-");
        assert_eq!(show(&json!("x")), "x");
        assert_eq!(show(&json!(12)), "12");
        assert_eq!(show(&json!(true)), "yes");
        assert_eq!(time_ms(Some(1_700_000_000_999)), "2023-11-14T22:13:20Z");
        assert_eq!(time_ms(None), "-");
        assert_eq!(age(Some(0.4)), "0s");
        assert_eq!(age(Some(192.0)), "3m12s");
        assert_eq!(age(Some(7500.0)), "2h05m");
        assert_eq!(age(Some(3.0 * 86_400.0 + 4.0 * 3600.0)), "3d04h");
        assert_eq!(age(None), "-");
    }
}
