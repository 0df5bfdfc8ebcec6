//! Digests: parsing with a typed error, and streaming hashing for the algorithms the store
//! verifies (sha256, sha512).

use oci_spec::image::{Digest, DigestAlgorithm};
use sha2::Digest as _;

use crate::{Error, Result};

/// Parse `alg:hex` into a [`Digest`], refusing anything malformed with an error naming it.
pub fn parse(input: &str) -> Result<Digest> {
    input.parse::<Digest>().map_err(|e| Error::InvalidDigest {
        input: input.to_string(),
        reason: e.to_string().to_lowercase(),
    })
}

/// The first 12 hex characters of a digest, as `docker images` shows them.
pub fn short(digest: &Digest) -> &str {
    let hex = digest.digest();
    &hex[..hex.len().min(12)]
}

/// An incremental hash for one of the supported algorithms.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// SHA-512.
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A fresh hasher for the algorithm of `digest`; an error if the store cannot verify it.
    pub fn for_digest(digest: &Digest) -> Result<Hasher> {
        Hasher::new(digest.algorithm()).ok_or_else(|| Error::UnsupportedAlgorithm(digest.clone()))
    }

    /// A fresh hasher for `algorithm`, or `None` when it is neither sha256 nor sha512.
    pub fn new(algorithm: &DigestAlgorithm) -> Option<Hasher> {
        match algorithm {
            DigestAlgorithm::Sha256 => Some(Hasher::Sha256(sha2::Sha256::new())),
            DigestAlgorithm::Sha512 => Some(Hasher::Sha512(sha2::Sha512::new())),
            _ => None,
        }
    }

    /// Feed bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let (alg, hex) = match self {
            Hasher::Sha256(h) => ("sha256", hex(&h.finalize())),
            Hasher::Sha512(h) => ("sha512", hex(&h.finalize())),
        };
        // Always well-formed: a known algorithm and lower-case hex of the right length.
        parse(&format!("{alg}:{hex}")).expect("a freshly computed digest is valid")
    }
}

/// The digest of `bytes` under the same algorithm as `like`.
pub fn of_bytes_like(like: &Digest, bytes: &[u8]) -> Result<Digest> {
    let mut h = Hasher::for_digest(like)?;
    h.update(bytes);
    Ok(h.finish())
}

/// The sha256 digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> Digest {
    let mut h = Hasher::Sha256(sha2::Sha256::new());
    h.update(bytes);
    h.finish()
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_known_vectors() {
        assert_eq!(
            sha256(b"abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let like = parse(&format!("sha512:{}", "0".repeat(128))).unwrap();
        assert_eq!(
            of_bytes_like(&like, b"abc").unwrap().digest(),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn refuses_malformed_digests() {
        for bad in ["sha256", "sha256:xyz", "sha256:ABC", "md5:"] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
        let other = parse("md5:d41d8cd98f00b204e9800998ecf8427e").unwrap();
        assert!(matches!(
            Hasher::for_digest(&other),
            Err(Error::UnsupportedAlgorithm(_))
        ));
    }
}
