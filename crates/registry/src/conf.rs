//! `registries.conf` (containers' v2 TOML): where an image is really pulled from — mirrors,
//! rewritten locations, blocked and insecure registries, and the registries an unqualified
//! name is searched in.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Reference, Result};

/// The parts of `registries.conf` img uses. Everything else in the file (aliases,
/// short-name-mode, …) is accepted and ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistriesConf {
    /// Registries an unqualified name (`redis`) is searched in, in order.
    #[serde(default)]
    pub unqualified_search_registries: Option<Vec<String>>,
    /// `[[registry]]` tables.
    #[serde(default)]
    pub registry: Vec<RegistryEntry>,
}

/// One `[[registry]]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistryEntry {
    /// What references this entry applies to (`docker.io`, `quay.io/ns`, `*.example.com`);
    /// defaults to `location`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Where to pull from instead of the prefix; defaults to the prefix.
    #[serde(default)]
    pub location: Option<String>,
    /// Allow plain http and unverified TLS.
    #[serde(default)]
    pub insecure: bool,
    /// Refuse to pull from it at all.
    #[serde(default)]
    pub blocked: bool,
    /// Mirrors, tried in order before the location.
    #[serde(default)]
    pub mirror: Vec<Mirror>,
}

/// One `[[registry.mirror]]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Mirror {
    /// The mirror's location (`host:port[/path]`), replacing the prefix.
    pub location: String,
    /// Allow plain http and unverified TLS.
    #[serde(default)]
    pub insecure: bool,
    /// `all` (default), `digest-only` or `tag-only`.
    #[serde(default)]
    pub pull_from_mirror: Option<String>,
}

/// A place to pull one reference from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The registry host (`127.0.0.1:5002`, `docker.io`).
    pub registry: String,
    /// The repository path at that registry.
    pub repository: String,
    /// Plain http and unverified TLS are allowed.
    pub insecure: bool,
    /// This is a mirror (failures fall through to the next source).
    pub mirror: bool,
}

impl RegistriesConf {
    /// Read the configuration as podman does: `explicit` if given; else the user's
    /// `$XDG_CONFIG_HOME/containers/registries.conf` if it exists; else
    /// `/etc/containers/registries.conf`; then the drop-ins of the `registries.conf.d`
    /// directory beside the file chosen, in name order. Missing files are no error.
    pub fn load(explicit: Option<&Path>) -> Result<RegistriesConf> {
        let main = match explicit {
            Some(p) => {
                if !p.is_file() {
                    return Err(Error::Config {
                        path: p.to_path_buf(),
                        reason: "no such file".into(),
                    });
                }
                p.to_path_buf()
            }
            None => {
                let user = std::env::var_os("XDG_CONFIG_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                    .map(|d| d.join("containers/registries.conf"));
                match user {
                    Some(u) if u.is_file() => u,
                    _ => PathBuf::from("/etc/containers/registries.conf"),
                }
            }
        };
        let mut conf = RegistriesConf::default();
        if main.is_file() {
            conf.merge(Self::parse_file(&main)?);
        }
        if explicit.is_none()
            && let Some(dir) = main.parent().map(|d| d.join("registries.conf.d"))
            && let Ok(entries) = std::fs::read_dir(&dir)
        {
            let mut files: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                .collect();
            files.sort();
            for f in files {
                conf.merge(Self::parse_file(&f)?);
            }
        }
        Ok(conf)
    }

    /// Parse one file.
    pub fn parse_file(path: &Path) -> Result<RegistriesConf> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::parse(&text).map_err(|reason| Error::Config {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parse TOML text.
    pub fn parse(text: &str) -> std::result::Result<RegistriesConf, String> {
        let conf: RegistriesConf =
            toml::from_str(text).map_err(|e| e.to_string().replace('\n', " "))?;
        for r in &conf.registry {
            if r.prefix.is_none() && r.location.is_none() {
                return Err("a [[registry]] needs a prefix or a location".into());
            }
        }
        Ok(conf)
    }

    /// A drop-in's settings override: its search list replaces ours, its registries replace
    /// ours of the same prefix.
    fn merge(&mut self, other: RegistriesConf) {
        if other.unqualified_search_registries.is_some() {
            self.unqualified_search_registries = other.unqualified_search_registries;
        }
        for entry in other.registry {
            self.registry.retain(|r| r.prefix() != entry.prefix());
            self.registry.push(entry);
        }
    }

    /// The entry whose prefix matches `name` (`registry/repository`) most specifically.
    pub fn entry_for(&self, name: &str) -> Option<&RegistryEntry> {
        self.registry
            .iter()
            .filter(|r| prefix_matches(r.prefix(), name))
            .max_by_key(|r| r.prefix().len())
    }

    /// Where to pull `reference` from, in order: the mirrors of its entry (those that accept
    /// a tag or digest pull as this one is), then its location. A blocked registry is an error.
    pub fn sources(&self, reference: &Reference) -> Result<Vec<Source>> {
        let name = reference.name();
        let Some(entry) = self.entry_for(&name) else {
            return Ok(vec![Source {
                registry: reference.registry().to_string(),
                repository: reference.repository().to_string(),
                insecure: false,
                mirror: false,
            }]);
        };
        if entry.blocked {
            return Err(Error::Blocked {
                reference: reference.to_string(),
                prefix: entry.prefix().to_string(),
            });
        }
        let by_digest = reference.digest().is_some();
        let mut out = Vec::new();
        for m in &entry.mirror {
            let wanted = match m.pull_from_mirror.as_deref() {
                Some("digest-only") => by_digest,
                Some("tag-only") => !by_digest,
                _ => true,
            };
            if wanted {
                out.push(rewrite(
                    entry.prefix(),
                    &m.location,
                    &name,
                    m.insecure,
                    true,
                ));
            }
        }
        let location = entry.location.as_deref().unwrap_or(entry.prefix());
        out.push(rewrite(
            entry.prefix(),
            location,
            &name,
            entry.insecure,
            false,
        ));
        Ok(out)
    }

    /// The registries to search for an unqualified name, if the configuration lists any.
    pub fn search_registries(&self) -> Option<&[String]> {
        self.unqualified_search_registries
            .as_deref()
            .filter(|l| !l.is_empty())
    }
}

impl RegistryEntry {
    /// The prefix, or the location when no prefix is given.
    pub fn prefix(&self) -> &str {
        self.prefix
            .as_deref()
            .or(self.location.as_deref())
            .unwrap_or_default()
    }
}

/// `name` is under `prefix` at a component boundary; `*.example.com` matches any subdomain.
fn prefix_matches(prefix: &str, name: &str) -> bool {
    if let Some(domain) = prefix.strip_prefix("*.") {
        let host = name.split('/').next().unwrap_or("");
        return host.ends_with(&format!(".{domain}"));
    }
    name == prefix || name.starts_with(&format!("{prefix}/"))
}

/// Replace `prefix` in `name` by `location` and split the result into registry and path.
fn rewrite(prefix: &str, location: &str, name: &str, insecure: bool, mirror: bool) -> Source {
    let rest = if prefix.starts_with("*.") {
        name.split_once('/').map_or("", |(_, r)| r).to_string()
    } else {
        name[prefix.len()..].trim_start_matches('/').to_string()
    };
    let full = if prefix.starts_with("*.") {
        format!("{}/{rest}", name.split('/').next().unwrap_or(""))
    } else if rest.is_empty() {
        location.to_string()
    } else {
        format!("{}/{rest}", location.trim_end_matches('/'))
    };
    let (registry, repository) = full.split_once('/').unwrap_or((&full, ""));
    Source {
        registry: registry.to_string(),
        repository: repository.to_string(),
        insecure,
        mirror,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"
unqualified-search-registries = ["127.0.0.1:5000", "docker.io"]
short-name-mode = "permissive"

[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = "127.0.0.1:1"
insecure = true

[[registry.mirror]]
location = "127.0.0.1:5002/cache"
pull-from-mirror = "tag-only"

[[registry]]
prefix = "quay.io/private"
blocked = true

[[registry]]
prefix = "example.com/old"
location = "127.0.0.1:5000/new"

[aliases]
"redis" = "docker.io/library/redis"
"#;

    #[test]
    fn mirrors_come_first_and_keep_library() {
        let conf = RegistriesConf::parse(CONF).unwrap();
        let r = Reference::parse("redis:7").unwrap();
        let s = conf.sources(&r).unwrap();
        let got: Vec<(String, String, bool)> = s
            .iter()
            .map(|s| (s.registry.clone(), s.repository.clone(), s.mirror))
            .collect();
        assert_eq!(
            got,
            vec![
                ("127.0.0.1:1".into(), "library/redis".into(), true),
                ("127.0.0.1:5002".into(), "cache/library/redis".into(), true),
                ("docker.io".into(), "library/redis".into(), false),
            ]
        );
        assert!(s[0].insecure && !s[1].insecure);
        // A digest pull skips the tag-only mirror.
        let d = format!("redis@sha256:{}", "a".repeat(64));
        let s = conf.sources(&Reference::parse(&d).unwrap()).unwrap();
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn locations_rewrite_and_blocks_refuse() {
        let conf = RegistriesConf::parse(CONF).unwrap();
        let s = conf
            .sources(&Reference::parse("example.com/old/app:1").unwrap())
            .unwrap();
        assert_eq!(s[0].registry, "127.0.0.1:5000");
        assert_eq!(s[0].repository, "new/app");
        let err = conf
            .sources(&Reference::parse("quay.io/private/x").unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("blocked") && err.contains("quay.io/private/x"),
            "{err}"
        );
        let s = conf
            .sources(&Reference::parse("quay.io/privateer/x").unwrap())
            .unwrap();
        assert_eq!(s[0].registry, "quay.io");
        assert_eq!(
            conf.search_registries().unwrap(),
            ["127.0.0.1:5000", "docker.io"]
        );
    }

    #[test]
    fn bad_files_are_named() {
        let err = RegistriesConf::parse("[[registry]]\ninsecure = true\n").unwrap_err();
        assert!(err.contains("prefix"), "{err}");
        assert!(RegistriesConf::parse("unqualified-search-registries = 3").is_err());
        let err = RegistriesConf::load(Some(Path::new("/nonexistent/r.conf")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/r.conf"), "{err}");
    }

    #[test]
    fn the_system_file_parses() {
        // Whatever this machine has (podman's containers-common ships aliases) must load.
        RegistriesConf::load(None).unwrap();
    }
}
