//! docker's `commit -c` changes: Dockerfile instructions that only touch the config.

use crate::{Builder, Error, Result};

/// The instructions a change may use.
const KNOWN: &str = "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR";

pub(crate) fn apply(builder: &mut Builder, change: &str) -> Result<()> {
    let bad = |reason: String| Error::Change {
        change: change.to_string(),
        reason,
    };
    let text = change.trim();
    let (instruction, rest) = match text.split_once(char::is_whitespace) {
        Some((i, r)) => (i, r.trim()),
        None => (text, ""),
    };
    let instruction = instruction.to_ascii_uppercase();
    if instruction.is_empty() {
        return Err(bad(format!("empty change: expected one of {KNOWN}")));
    }
    if rest.is_empty() {
        return Err(bad(format!("{instruction} needs an argument")));
    }
    match instruction.as_str() {
        "CMD" => {
            builder.cmd(command(rest));
            builder.cmd_changed = true;
        }
        "ENTRYPOINT" => {
            builder.entrypoint(command(rest));
            // As in a Dockerfile: an ENTRYPOINT drops the CMD inherited from the image.
            if !builder.cmd_changed {
                builder.clear_cmd();
            }
        }
        "ENV" | "LABEL" => {
            for (key, value) in pairs(rest).map_err(bad)? {
                if instruction == "ENV" {
                    builder.env(&key, &value);
                } else {
                    builder.label(&key, &value);
                }
            }
        }
        "EXPOSE" => {
            for word in words(rest).map_err(bad)? {
                for port in ports(&word).map_err(bad)? {
                    builder.expose(&port);
                }
            }
        }
        "USER" => {
            builder.user(rest);
        }
        "WORKDIR" => {
            let dir = if rest.starts_with('/') {
                rest.to_string()
            } else {
                let current = builder.current_workdir().unwrap_or_else(|| "/".into());
                format!("{}/{rest}", current.trim_end_matches('/'))
            };
            builder.workdir(&dir);
        }
        "VOLUME" => {
            let paths = match json_list(rest) {
                Some(list) => list,
                None => words(rest).map_err(bad)?,
            };
            for path in paths {
                builder.volume(&path);
            }
        }
        "STOPSIGNAL" => {
            builder.stop_signal(rest);
        }
        other => {
            return Err(bad(format!(
                "{other} cannot be applied by commit: expected one of {KNOWN}"
            )));
        }
    }
    Ok(())
}

/// `["a","b"]` (exec form), else `/bin/sh -c TEXT` (shell form), as docker reads them.
fn command(rest: &str) -> Vec<String> {
    json_list(rest).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
}

fn json_list(rest: &str) -> Option<Vec<String>> {
    if !rest.starts_with('[') {
        return None;
    }
    serde_json::from_str(rest).ok()
}

/// `K=V K2="V 2"`, or the old form `K V WITH SPACES`.
fn pairs(rest: &str) -> Result<Vec<(String, String)>, String> {
    let first = rest.split_whitespace().next().unwrap_or_default();
    if !first.contains('=') {
        let (key, value) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("expected KEY=VALUE or KEY VALUE, got {rest:?}"))?;
        return Ok(vec![(key.to_string(), value.trim().to_string())]);
    }
    words(rest)?
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("expected KEY=VALUE, got {w:?}")),
        })
        .collect()
}

/// Split on white space, with '…' and "…" quoting and \ escapes (not inside '…').
fn words(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().ok_or("a trailing backslash")?);
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("an unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => word.push(chars.next().ok_or("a trailing backslash")?),
                        Some(c) => word.push(c),
                        None => return Err("an unterminated \" quote".into()),
                    }
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        out.push(word);
    }
    Ok(out)
}

/// `80`, `80/udp`, `8000-8002/tcp` → `80/tcp`, …
fn ports(word: &str) -> Result<Vec<String>, String> {
    let (range, proto) = word.split_once('/').unwrap_or((word, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(format!("port {word:?}: protocol must be tcp, udp or sctp"));
    }
    let port = |s: &str| {
        s.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid port {word:?}"))
    };
    let (low, high) = match range.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(range)?, port(range)?),
    };
    if low > high {
        return Err(format!("invalid port range {word:?}"));
    }
    Ok((low..=high).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_pairs_read_quotes_as_docker() {
        assert_eq!(
            words(r#"a "b c" 'd e' f\ g"#).unwrap(),
            ["a", "b c", "d e", "f g"]
        );
        assert_eq!(
            pairs(r#"A=1 B="two words" C="#).unwrap(),
            [
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), String::new())
            ]
        );
        assert_eq!(
            pairs("PATH /usr/bin:/bin  with spaces").unwrap(),
            [("PATH".into(), "/usr/bin:/bin  with spaces".into())]
        );
        assert!(words("\"open").is_err());
        assert!(pairs("=x").is_err());
    }

    #[test]
    fn ports_expand() {
        assert_eq!(ports("80").unwrap(), ["80/tcp"]);
        assert_eq!(ports("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(ports("1-3").unwrap(), ["1/tcp", "2/tcp", "3/tcp"]);
        for bad in ["0", "x", "80/icmp", "3-1", "70000"] {
            assert!(ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commands_in_both_forms() {
        assert_eq!(command(r#"["a", "b"]"#), ["a", "b"]);
        assert_eq!(command("echo hi"), ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(command("[not json"), ["/bin/sh", "-c", "[not json"]);
    }
}
