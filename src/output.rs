//! Shared output helpers: one-line errors, tables, sizes and ages.

use std::io::Write;

/// Print an error and its causes on one line, as `img: outer: inner`.
pub fn error(e: &anyhow::Error) {
    let line = format!("{e:#}").replace('\n', " ");
    let _ = writeln!(std::io::stderr(), "img: {line}");
}

/// Print rows as left-aligned columns separated by three spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    // A tab inside a cell (a history's created_by may have one) is a space here.
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        cells
            .map(|c| c.replace('\t', " "))
            .collect::<Vec<_>>()
            .join("\t")
    };
    let lines: Vec<String> = std::iter::once(line(&mut header.iter().copied()))
        .chain(rows.iter().map(|r| line(&mut r.iter().map(String::as_str))))
        .collect();
    let _ = write!(std::io::stdout().lock(), "{}", crate::format::align(&lines));
}

/// Print a value as pretty JSON.
pub fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Bytes in decimal units, as docker shows them (`28.4MB`).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes}B");
    }
    // Three significant digits, without trailing zeros.
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let mut text = format!("{value:.digits$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    text + UNITS[unit]
}

/// How long ago an RFC 3339 time was, in docker's words (`3 days ago`).
pub fn age(created: Option<&str>) -> String {
    let Some(ts) = created.and_then(|c| c.parse::<jiff::Timestamp>().ok()) else {
        return "N/A".into();
    };
    let secs = jiff::Timestamp::now().as_second() - ts.as_second();
    if secs < 0 {
        return "in the future".into();
    }
    let (n, unit) = match secs {
        s if s < 60 => return "less than a minute ago".into(),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s if s < 86_400 * 14 => (s / 86_400, "day"),
        s if s < 86_400 * 60 => (s / (86_400 * 7), "week"),
        s if s < 86_400 * 365 * 2 => (s / (86_400 * 30), "month"),
        s => (s / (86_400 * 365), "year"),
    };
    if n == 1 {
        format!("{} {unit} ago", if unit == "hour" { "an" } else { "a" })
    } else {
        format!("{n} {unit}s ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(size(999), "999B");
        assert_eq!(size(28_400_000), "28.4MB");
        assert_eq!(size(1_000), "1kB");
        assert_eq!(size(278_123_456), "278MB");
        assert_eq!(size(1_534_000_000), "1.53GB");
    }

    #[test]
    fn ages_read_like_docker() {
        assert_eq!(age(None), "N/A");
        assert_eq!(age(Some("not a time")), "N/A");
        let ago = |secs: i64| {
            let t = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - secs);
            age(Some(&t.unwrap().to_string()))
        };
        assert_eq!(ago(5), "less than a minute ago");
        assert_eq!(ago(3 * 86_400 + 10), "3 days ago");
        assert_eq!(ago(3600 + 5), "an hour ago");
    }
}
