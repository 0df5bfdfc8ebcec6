//! docker's `--format`: a Go template (with `gtmpl`, Go's text/template in Rust) applied to
//! each item, `table TEMPLATE` (a header row, then one row per item, columns aligned), or
//! `json` (each item as one line of JSON). Items are JSON objects with docker's field names;
//! the template's `\t` and `\n` are a tab and a newline, as docker reads them.

use std::collections::HashMap;

use anyhow::{Context, Result};
use gtmpl::{Func, FuncError, Template, Value};

/// The output flags `ps` and `images` share with docker's.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// docker's --format: a Go template per row (`{{.ID}} {{.Names}}`), `table TEMPLATE`, or
    /// `json`; the fields are docker's (README)
    #[arg(long)]
    pub format: Option<String>,
    /// Only rows that match, docker's `KEY=VALUE` filters (repeatable; one key's values are
    /// alternatives, keys all apply; README lists them)
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Whole ids (and commands)
    #[arg(long)]
    pub no_trunc: bool,
}

/// A parsed `--format`.
pub enum Format {
    /// Each item as a line of JSON.
    Json,
    /// A template per item.
    Lines(Template),
    /// A header row (the template rendered over the field names' headers), then the rows,
    /// tab-separated cells aligned as docker's tables are.
    Table(Template),
}

impl Format {
    /// Parse `text` (docker's syntax).
    pub fn parse(text: &str) -> Result<Format> {
        if text.trim() == "json" {
            return Ok(Format::Json);
        }
        let (table, body) = match text.trim_start().strip_prefix("table") {
            Some(rest) => (true, rest.trim()),
            None => (false, text),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut template = Template::default();
        for (name, func) in FUNCS {
            template.add_func(name, func);
        }
        template
            .parse(&body)
            .map_err(|e| anyhow::anyhow!("invalid --format {text:?}: {e}"))?;
        Ok(if table {
            Format::Table(template)
        } else {
            Format::Lines(template)
        })
    }

    /// Render `items`; `headers` names the column of each field (`ID` → `CONTAINER ID`), for
    /// a table's header row (a field not named there is headed by its name in capitals).
    pub fn render(&self, items: &[serde_json::Value], headers: &[(&str, &str)]) -> Result<String> {
        let one = |template: &Template, item: &serde_json::Value| -> Result<String> {
            template
                .render(&gtmpl::Context::from(value(item)))
                .map_err(|e| anyhow::anyhow!("--format: {e}"))
        };
        let mut out = String::new();
        match self {
            Format::Json => {
                for item in items {
                    out.push_str(&serde_json::to_string(item).context("--format json")?);
                    out.push('\n');
                }
            }
            Format::Lines(template) => {
                for item in items {
                    out.push_str(&one(template, item)?);
                    out.push('\n');
                }
            }
            Format::Table(template) => {
                let mut names: HashMap<String, serde_json::Value> = HashMap::new();
                for item in items.iter().take(1) {
                    if let Some(map) = item.as_object() {
                        for key in map.keys() {
                            names.insert(key.clone(), key.to_uppercase().into());
                        }
                    }
                }
                for (field, header) in headers {
                    names.insert(field.to_string(), (*header).into());
                }
                let header = one(template, &serde_json::json!(names))?;
                let mut rows = vec![header];
                for item in items {
                    rows.push(one(template, item)?);
                }
                out = align(&rows);
            }
        }
        Ok(out)
    }
}

/// docker's `--filter KEY=VALUE` list: one key's values are alternatives, keys all apply.
pub struct Filters(Vec<(String, String)>);

impl Filters {
    /// Parse `given`, refusing a key not in `known`.
    pub fn parse(given: &[String], known: &[&str]) -> Result<Filters> {
        let mut out = Vec::new();
        for f in given {
            let (key, value) = f
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("invalid filter {f:?}: expected KEY=VALUE"))?;
            if !known.contains(&key) {
                anyhow::bail!(
                    "invalid filter {key:?}: the filters here are {}",
                    known.join(", ")
                );
            }
            out.push((key.to_string(), value.to_string()));
        }
        Ok(Filters(out))
    }

    /// Whether any filter has this key.
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// Whether an item passes: for every key given, `matches(key, value)` for one of its values.
    pub fn all(&self, matches: impl Fn(&str, &str) -> bool) -> bool {
        self.0.iter().all(|(key, _)| {
            self.0
                .iter()
                .filter(|(k, _)| k == key)
                .any(|(k, v)| matches(k, v))
        })
    }
}

/// Whether `text` matches `pattern`, whose `*` stands for any run of characters (docker's
/// `reference=` filter; `?` and classes are not supported).
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == text;
    }
    if !text.starts_with(first) || !text.ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

/// `label=KEY` (the label is there) or `label=KEY=VALUE` (with that value).
pub fn label_matches<'a>(
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
    wanted: &str,
) -> bool {
    let (key, value) = match wanted.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (wanted, None),
    };
    labels
        .into_iter()
        .any(|(k, v)| k == key && value.is_none_or(|want| want == v))
}

/// Labels as docker's `.Labels` field shows them: `k=v,k2=v2`, sorted.
pub fn labels_text<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let mut pairs: Vec<String> = labels
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// Tab-separated cells in columns, three spaces apart (docker's tabwriter padding).
pub fn align(rows: &[String]) -> String {
    let cells: Vec<Vec<&str>> = rows.iter().map(|r| r.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &cells {
        for (i, cell) in row.iter().enumerate() {
            let n = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(n),
                None => widths.push(n),
            }
        }
    }
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A JSON value as the template engine's.
fn value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or_default()),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(value).collect()),
        serde_json::Value::Object(o) => {
            Value::Map(o.iter().map(|(k, v)| (k.clone(), value(v))).collect())
        }
    }
}

/// The engine's value as JSON (for `json`).
fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil | Value::NoValue => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::String(s) => s.clone().into(),
        Value::Number(n) => n
            .as_i64()
            .map(Into::into)
            .or_else(|| n.as_u64().map(Into::into))
            .or_else(|| n.as_f64().map(Into::into))
            .unwrap_or_default(),
        Value::Array(a) => a.iter().map(to_json).collect(),
        Value::Map(m) | Value::Object(m) => {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
        Value::Function(_) => serde_json::Value::Null,
    }
}

/// docker's template functions, beyond Go's own (`index`, `printf`, `len`, `eq`, …).
const FUNCS: [(&str, Func); 5] = [
    ("json", json),
    ("upper", upper),
    ("lower", lower),
    ("join", join),
    ("split", split),
];

fn arg<'a>(args: &'a [Value], i: usize, name: &str) -> Result<&'a Value, FuncError> {
    args.get(i)
        .ok_or_else(|| FuncError::Generic(format!("{name}: missing argument {}", i + 1)))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn json(args: &[Value]) -> Result<Value, FuncError> {
    let v = to_json(arg(args, 0, "json")?);
    Ok(Value::from(serde_json::to_string(&v).unwrap_or_default()))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(text(arg(args, 0, "upper")?).to_uppercase()))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(text(arg(args, 0, "lower")?).to_lowercase()))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = text(arg(args, 1, "join")?);
    match arg(args, 0, "join")? {
        Value::Array(a) => Ok(Value::from(
            a.iter().map(text).collect::<Vec<_>>().join(&sep),
        )),
        other => Ok(Value::from(text(other))),
    }
}

fn split(args: &[Value]) -> Result<Value, FuncError> {
    let (s, sep) = (text(arg(args, 0, "split")?), text(arg(args, 1, "split")?));
    Ok(Value::Array(
        s.split(sep.as_str()).map(Value::from).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(format: &str, items: &[serde_json::Value]) -> String {
        Format::parse(format)
            .unwrap()
            .render(items, &[("ID", "CONTAINER ID")])
            .unwrap()
    }

    #[test]
    fn go_template_fields_functions_and_tables() {
        let items = [
            serde_json::json!({"ID": "abc", "Names": "web", "State": {"Pid": 42},
                               "Cmd": ["redis-server", "--port", "7000"]}),
            serde_json::json!({"ID": "defghi", "Names": "db", "State": {"Pid": 7},
                               "Cmd": []}),
        ];
        assert_eq!(render("{{.ID}} {{.Names}}", &items), "abc web\ndefghi db\n");
        assert_eq!(render("{{.State.Pid}}", &items[..1]), "42\n");
        assert_eq!(
            render("{{json .Cmd}}", &items[..1]),
            "[\"redis-server\",\"--port\",\"7000\"]\n"
        );
        assert_eq!(
            render("{{join .Cmd \" \"}}", &items[..1]),
            "redis-server --port 7000\n"
        );
        assert_eq!(
            render("{{index .Cmd 1}}|{{upper .Names}}", &items[..1]),
            "--port|WEB\n"
        );
        assert_eq!(
            render("table {{.ID}}\\t{{.Names}}", &items),
            "CONTAINER ID   NAMES\nabc            web\ndefghi         db\n"
        );
        assert_eq!(
            render("json", &items[1..]),
            "{\"Cmd\":[],\"ID\":\"defghi\",\"Names\":\"db\",\"State\":{\"Pid\":7}}\n"
        );
        assert!(Format::parse("{{.ID").is_err());
    }

    #[test]
    fn filters_and_globs() {
        assert!(glob("redis:*", "redis:7"));
        assert!(glob("*/busybox*", "127.0.0.1:5000/busybox:latest"));
        assert!(!glob("redis:*", "redis"));
        assert!(glob("a*b*c", "a-b-c") && !glob("a*b*c", "a-c-b"));
        let f = Filters::parse(
            &[
                "status=exited".into(),
                "status=created".into(),
                "name=web".into(),
            ],
            &["status", "name"],
        )
        .unwrap();
        let item = |status: &str, name: &str| {
            f.all(|k, v| match k {
                "status" => v == status,
                _ => name.contains(v),
            })
        };
        assert!(item("created", "web-1") && item("exited", "web"));
        assert!(!item("running", "web") && !item("exited", "db"));
        assert!(Filters::parse(&["colour=red".into()], &["status"]).is_err());
        let labels = HashMap::from([("tier".to_string(), "db".to_string())]);
        assert!(label_matches(&labels, "tier") && label_matches(&labels, "tier=db"));
        assert!(!label_matches(&labels, "tier=web"));
    }
}
