//! Image references, parsed and normalized as docker does: `redis` is
//! `docker.io/library/redis:latest`; `host:port/ns/app:tag`, `name@sha256:…` and `localhost/app`
//! keep their registry.

use std::fmt;
use std::str::FromStr;

use img_store::Digest;

use crate::{Error, Result};

/// The registry name docker uses for Docker Hub.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
const MAX_NAME: usize = 255;

/// A fully qualified image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parse and normalize a reference as a user types it, by the grammar of
    /// distribution/reference. Refused, with the bad part named: 64 hex digits alone (an
    /// image ID, not a name), a digest whose algorithm the store cannot verify (only sha256
    /// and sha512) or with the wrong number of hex digits, anything but `:PORT` after a
    /// bracketed IPv6 registry, and a port above 65535 (the grammar takes any digits).
    pub fn parse(input: &str) -> Result<Reference> {
        let bad = |reason: String| Error::InvalidReference {
            input: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(bad("empty reference".into()));
        }
        if is_image_id(input) {
            return Err(bad(
                "64 hex digits are an image ID, not a repository name".into()
            ));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((name, d)) => {
                let digest =
                    parse_digest(d).map_err(|r| bad(format!("invalid digest {d:?}: {r}")))?;
                (name, Some(digest))
            }
            None => (input, None),
        };
        if rest.starts_with('[') && !rest.contains('/') {
            return Err(bad(
                "an IPv6 registry needs a repository after it ([ADDR]:PORT/REPO)".into(),
            ));
        }
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(|r| bad(format!("invalid tag {tag:?}: {r}")))?;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder)) if is_registry(first) => {
                check_registry(first)
                    .map_err(|r| bad(format!("invalid registry {first:?}: {r}")))?;
                let registry = if first == "index.docker.io" {
                    DOCKER_HUB
                } else {
                    first
                };
                (registry.to_string(), remainder.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        for component in repository.split('/') {
            check_component(component)
                .map_err(|r| bad(format!("invalid repository component {component:?}: {r}")))?;
        }
        if registry.len() + 1 + repository.len() > MAX_NAME {
            return Err(bad(format!(
                "repository name longer than {MAX_NAME} characters"
            )));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Whether `input` names its registry (`host/app`, `localhost/app`) rather than leaving
    /// it to the defaults (`redis`, `user/app`).
    pub fn is_qualified(input: &str) -> bool {
        input
            .split_once('/')
            .is_some_and(|(first, _)| is_registry(first))
    }

    /// Whether `input` is exactly 64 lower-case hex digits: the short form of an image ID
    /// (`sha256:` left out), which docker (and [`Reference::parse`]) refuses as a repository
    /// name. Such input names a local image by ID and is never pulled.
    pub fn is_image_id(input: &str) -> bool {
        is_image_id(input)
    }

    /// The registry as named in the reference (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path (`library/redis`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (`latest` when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What goes in `/v2/<name>/manifests/<this>`: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The same image with a different tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference> {
        Reference::parse(&format!("{}:{tag}", self.name()))
    }

    /// The host (and port) that serves this registry's API.
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }
}

/// The host that serves a registry's API (Docker Hub's differs from its name).
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Reference> {
        Reference::parse(s)
    }
}

/// Docker's rule: the first component names a registry when it has a `.` or `:`, is
/// `localhost`, or has upper-case letters (which a repository may not).
fn is_registry(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

fn check_registry(registry: &str) -> std::result::Result<(), String> {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or("unclosed '['")?;
        // Only hex digits and colons, as the reference grammar: no zone (`%eth0`), no
        // embedded IPv4 (`::ffff:1.2.3.4`).
        if v6.is_empty()
            || !v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':')
            || v6.parse::<std::net::Ipv6Addr>().is_err()
        {
            return Err(format!("{v6:?} is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Err(format!("{after:?} after ']': only \":PORT\" may follow")),
            },
        };
        (None, port)
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err(format!("{host:?} is not a host name"));
        }
    }
    if let Some(port) = port {
        // Digits only (`u16::from_str` would take "+80"), and at most 65535: the reference
        // grammar takes any digits, but no such port exists.
        let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
        if !digits || port.parse::<u16>().is_err() {
            return Err(format!("{port:?} is not a port number (0-65535)"));
        }
    }
    Ok(())
}

fn is_image_id(input: &str) -> bool {
    input.len() == 64
        && input
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A digest as a reference may pin one: `ALGORITHM:HEX` with an algorithm the store can
/// verify (sha256, sha512) and exactly as many lower-case hex digits as it produces.
fn parse_digest(d: &str) -> std::result::Result<Digest, String> {
    let (algorithm, hex) = d
        .split_once(':')
        .ok_or("expected ALGORITHM:HEX (sha256:…)")?;
    let want = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        "" => return Err("empty algorithm".into()),
        other => {
            return Err(format!(
                "algorithm {other:?} is not supported (supported: sha256, sha512)"
            ));
        }
    };
    if let Some(c) = hex.chars().find(|&c| !matches!(c, '0'..='9' | 'a'..='f')) {
        return Err(format!("{c:?} is not a lower-case hex digit"));
    }
    if hex.len() != want {
        return Err(format!(
            "{algorithm} takes {want} hex digits, not {}",
            hex.len()
        ));
    }
    img_store::digest::parse(d).map_err(|e| e.to_string())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn check_component(c: &str) -> std::result::Result<(), String> {
    if c.is_empty() {
        return Err("empty".into());
    }
    if c.chars().any(|ch| ch.is_ascii_uppercase()) {
        return Err("repository names must be lowercase".into());
    }
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err("must start and end with a letter or digit".into());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(format!("separator {sep:?} is not allowed"));
        }
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn check_tag(tag: &str) -> std::result::Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    match chars.next() {
        None => return Err("empty".into()),
        Some(c) if !word(c) => return Err("must start with a letter, digit or '_'".into()),
        _ => {}
    }
    if tag.len() > 128 {
        return Err("longer than 128 characters".into());
    }
    if let Some(c) = chars.find(|&c| !(word(c) || c == '.' || c == '-')) {
        return Err(format!("character {c:?} is not allowed"));
    }
    Ok(())
}

/// Whether a registry host is on this machine: such registries are spoken to in plain http
/// unless a CA for them is configured.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(norm("redis"), "docker.io/library/redis:latest");
        assert_eq!(norm("redis:7"), "docker.io/library/redis:7");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(norm("docker.io/redis:7"), "docker.io/library/redis:7");
        assert_eq!(
            norm("index.docker.io/library/redis"),
            "docker.io/library/redis:latest"
        );
        assert_eq!(norm("127.0.0.1:5000/redis:7"), "127.0.0.1:5000/redis:7");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(
            norm("localhost:5000/a/b/c:v1.2-rc_3"),
            "localhost:5000/a/b/c:v1.2-rc_3"
        );
        assert_eq!(norm("[::1]:5000/app:1"), "[::1]:5000/app:1");
        assert_eq!(norm("quay.io/a__b/c-d---e.f:x"), "quay.io/a__b/c-d---e.f:x");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("redis@{d}")),
            format!("docker.io/library/redis@{d}")
        );
        assert_eq!(
            norm(&format!("redis:7@{d}")),
            format!("docker.io/library/redis:7@{d}")
        );
        let r = Reference::parse(&format!("h:1/x@{d}")).unwrap();
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(r.tag(), None);
        assert_eq!(
            Reference::parse("redis").unwrap().api_host(),
            DOCKER_HUB_API
        );
    }

    #[test]
    fn names_the_bad_part() {
        for (input, part) in [
            ("Redis", "lowercase"),
            ("redis:", "invalid tag"),
            ("redis:-x", "invalid tag"),
            ("redis:a/b", "not a port number"),
            ("a//b", "empty"),
            ("redis@sha256:xyz", "invalid digest"),
            ("host:99999/app", "port"),
            ("bad_host.io:5000/app", "host name"),
            ("-lead", "start and end"),
            ("a..b", "separator"),
            ("", "empty reference"),
        ] {
            let err = Reference::parse(input).unwrap_err().to_string();
            assert!(err.contains(part), "{input}: {err}");
            assert!(err.contains(&format!("{input:?}")), "{input}: {err}");
        }
    }

    #[test]
    fn knows_loopback_hosts() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("127.3.2.1"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("docker.io"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }
}
