//! Platforms (`os/arch[/variant]`) and choosing one from an index.

use std::fmt;
use std::str::FromStr;

use img_store::Descriptor;

use crate::{Error, Result};

/// An image platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// Operating system, as Go names it (`linux`).
    pub os: String,
    /// Architecture, as Go names it (`amd64`, `arm64`).
    pub architecture: String,
    /// CPU variant (`v8`, `v7`), if any.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of the machine this runs on.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// Whether an index entry's platform satisfies this one. A variant we ask for must match
    /// (arm64 without a variant counts as v8); one we leave out matches any.
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && match &self.variant {
                None => true,
                Some(v) => other.normalized_variant().as_deref() == Some(v.as_str()),
            }
    }

    fn normalized_variant(&self) -> Option<String> {
        match (&self.architecture[..], &self.variant) {
            ("arm64", None) => Some("v8".into()),
            (_, v) => v.clone(),
        }
    }

    /// The platform of an index entry, if it has one.
    pub fn of_descriptor(descriptor: &Descriptor) -> Option<Platform> {
        let p = descriptor.platform().as_ref()?;
        Some(Platform {
            os: p.os().to_string(),
            architecture: p.architecture().to_string(),
            variant: p.variant().clone().filter(|v| !v.is_empty()),
        })
    }

    /// Choose this platform's manifest among an index's entries. Among several matches, the one
    /// whose variant equals ours (or arm64's default) wins, then the first.
    pub fn select<'a>(&self, entries: &'a [Descriptor]) -> Option<&'a Descriptor> {
        let candidates: Vec<(&Descriptor, Platform)> = entries
            .iter()
            .filter_map(|d| Platform::of_descriptor(d).map(|p| (d, p)))
            .filter(|(_, p)| self.matches(p))
            .collect();
        let ours = self.normalized_variant();
        candidates
            .iter()
            .find(|(_, p)| p.normalized_variant() == ours)
            .or(candidates.first())
            .map(|(d, _)| *d)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Platform> {
        let bad = |reason: &str| Error::InvalidPlatform {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad("empty component; expected os/arch[/variant]"));
        }
        let lower = |p: &str| p.to_ascii_lowercase();
        match parts[..] {
            [os, arch] => Ok(Platform {
                os: lower(os),
                architecture: lower(arch),
                variant: None,
            }),
            [os, arch, variant] => Ok(Platform {
                os: lower(os),
                architecture: lower(arch),
                variant: Some(lower(variant)),
            }),
            _ => Err(bad("expected os/arch[/variant]")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(platform: &str) -> Descriptor {
        let p: Platform = platform.parse().unwrap();
        let mut json = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": img_store::digest::sha256(platform.as_bytes()).to_string(),
            "size": 1,
            "platform": {"os": p.os, "architecture": p.architecture},
        });
        if let Some(v) = p.variant {
            json["platform"]["variant"] = v.into();
        }
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn selects_by_os_arch_variant() {
        let entries = [
            entry("linux/amd64"),
            entry("linux/arm/v7"),
            entry("linux/arm64"),
        ];
        let pick = |s: &str| {
            s.parse::<Platform>()
                .unwrap()
                .select(&entries)
                .map(|d| Platform::of_descriptor(d).unwrap().to_string())
        };
        assert_eq!(pick("linux/amd64").as_deref(), Some("linux/amd64"));
        assert_eq!(pick("linux/arm64/v8").as_deref(), Some("linux/arm64"));
        assert_eq!(pick("linux/arm64").as_deref(), Some("linux/arm64"));
        assert_eq!(pick("linux/arm/v7").as_deref(), Some("linux/arm/v7"));
        assert_eq!(pick("linux/arm/v6"), None);
        assert_eq!(pick("windows/amd64"), None);
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(
            "Linux/ARM64/v8".parse::<Platform>().unwrap().to_string(),
            "linux/arm64/v8"
        );
        for bad in ["linux", "linux/", "a/b/c/d", ""] {
            let err = bad.parse::<Platform>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
