//! Output: a table by default (columns chosen per command), or `--output json` (what the
//! server returned, pretty-printed).

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

pub fn json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON serializes")
    );
}

/// A column: its header and how to read it from one item.
pub struct Col<'a> {
    pub header: &'a str,
    pub get: &'a dyn Fn(&Value) -> String,
}

pub fn col<'a>(header: &'a str, get: &'a dyn Fn(&Value) -> String) -> Col<'a> {
    Col { header, get }
}

/// Renders items as an `az -o table` style table: headers, dashes, left-aligned columns.
pub fn render(cols: &[Col], items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| cols.iter().map(|c| clean((c.get)(item))).collect())
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([c.header.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![
        line(cols.iter().map(|c| c.header.to_string()).collect()),
        line(widths.iter().map(|w| "-".repeat(*w)).collect()),
    ];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

/// Table cells stay on one line.
fn clean(s: String) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

pub fn table(cols: &[Col], items: &[Value]) {
    println!("{}", render(cols, items));
}

/// Prints items as JSON or a table.
pub fn items(format: Format, cols: &[Col], items: &[Value]) {
    match format {
        Format::Json => json(&Value::Array(items.to_vec())),
        Format::Table => table(cols, items),
    }
}

/// Prints one object as JSON or a one-row table.
pub fn one(format: Format, cols: &[Col], item: &Value) {
    match format {
        Format::Json => json(item),
        Format::Table => table(cols, std::slice::from_ref(item)),
    }
}

/// A string field (empty if absent); `path` is a JSON pointer.
pub fn s(v: &Value, path: &str) -> String {
    match v.pointer(path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(Value::Bool(b)) => if *b { "True" } else { "False" }.into(),
        Some(other) => other.to_string(),
    }
}

/// A Unix-seconds field as RFC 3339.
pub fn time(v: &Value, path: &str) -> String {
    v.pointer(path)
        .and_then(Value::as_i64)
        .map(rfc3339)
        .unwrap_or_default()
}

pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The last segment of an id (`…/secrets/name` → `name`).
pub fn last(v: &Value, path: &str) -> String {
    s(v, path)
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_stay_on_one_line() {
        let items = vec![
            json!({"n": "a", "e": true}),
            json!({"n": "long\nname", "e": false}),
        ];
        let text = render(
            &[
                col("Name", &|v| s(v, "/n")),
                col("Enabled", &|v| s(v, "/e")),
            ],
            &items,
        );
        assert_eq!(
            text,
            "Name       Enabled\n---------  -------\na          True\nlong name  False"
        );
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(last(&json!({"id": "https://v/secrets/x"}), "/id"), "x");
    }
}
