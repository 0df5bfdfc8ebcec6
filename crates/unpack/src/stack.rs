//! The layers below a snapshot, seen merged as overlayfs shows them. A layer's tar names paths
//! in the image as its lower layers left it: `a/link/file` where a lower layer made `a/link` a
//! symlink lands where the link points, and a hardlink may name a lower layer's file. A
//! flattened unpack sees that for free; a snapshot, prepared on its own, resolves such paths
//! through this view (see `apply::Applier::with_lowers`).

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The snapshot directories (`fs/`) under a layer, topmost first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lowers {
    roots: Vec<PathBuf>,
}

/// What the merged lower view has at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// Nothing (never there, or whited out).
    Missing,
    /// A directory.
    Dir,
    /// A symlink, with its target.
    Symlink(OsString),
    /// A file, device or FIFO: in the snapshot at `roots[layer]`.
    Other { layer: usize },
}

impl Lowers {
    /// The view of these snapshot directories, topmost first.
    pub(crate) fn new(roots: Vec<PathBuf>) -> Lowers {
        Lowers { roots }
    }

    /// Where the entry of layer `layer` at `path` is on disk.
    pub(crate) fn path_in(&self, layer: usize, path: &[OsString]) -> PathBuf {
        let mut p = self.roots[layer].clone();
        p.extend(path);
        p
    }

    /// What the merged view has at `dir/name`, where `dir` is a directory of the merged view.
    /// overlayfs' rules: the topmost layer that has the name decides; a whiteout hides it; a
    /// directory merges with the layers below until one of them has something else there or
    /// the directory (or one above it) is opaque.
    pub(crate) fn lookup(&self, dir: &[OsString], name: &OsStr) -> Found {
        'layers: for (k, root) in self.roots.iter().enumerate() {
            let mut p = root.clone();
            let mut opaque = false;
            for c in dir {
                p.push(c);
                match std::fs::symlink_metadata(&p) {
                    // This layer has nothing under here.
                    Err(_) => continue 'layers,
                    Ok(m) if m.is_dir() => opaque |= is_opaque(&p),
                    // A whiteout or a non-directory hides this path in every layer below.
                    Ok(_) => return Found::Missing,
                }
            }
            p.push(name);
            match std::fs::symlink_metadata(&p) {
                Err(_) if opaque => return Found::Missing,
                Err(_) => continue,
                Ok(m) => {
                    let t = m.file_type();
                    return if t.is_char_device() && m.rdev() == 0 {
                        Found::Missing
                    } else if t.is_dir() {
                        Found::Dir
                    } else if t.is_symlink() {
                        match std::fs::read_link(&p) {
                            Ok(target) => Found::Symlink(target.into_os_string()),
                            Err(_) => Found::Other { layer: k },
                        }
                    } else {
                        Found::Other { layer: k }
                    };
                }
            }
        }
        Found::Missing
    }

    /// Whether a directory a layer needed but did not list (`implied`, a path in the layer) is
    /// something else in the view below: a symlink the path should have gone through, or a
    /// file it cannot go through. Then the snapshot made without this view is wrong.
    pub(crate) fn contradicts(&self, implied: &[PathBuf]) -> bool {
        implied.iter().any(|path| {
            let comps: Vec<OsString> = path.iter().map(OsStr::to_owned).collect();
            match comps.split_last() {
                Some((name, dir)) => !matches!(self.lookup(dir, name), Found::Dir | Found::Missing),
                None => false,
            }
        })
    }
}

fn is_opaque(dir: &Path) -> bool {
    [true, false].into_iter().any(|privileged| {
        let mut value = [0u8; 4];
        matches!(
            rustix::fs::lgetxattr(dir, crate::apply::opaque_xattr(privileged), &mut value),
            Ok(1) if value[0] == b'y'
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    #[test]
    fn the_topmost_layer_decides_and_whiteouts_hide() {
        let base = std::env::temp_dir().join(format!("img-stack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (top, bottom) = (base.join("top"), base.join("bottom"));
        std::fs::create_dir_all(top.join("d")).unwrap();
        std::fs::create_dir_all(bottom.join("d/sub")).unwrap();
        std::fs::write(bottom.join("d/file"), "x").unwrap();
        std::os::unix::fs::symlink("sub", bottom.join("d/link")).unwrap();
        std::os::unix::fs::symlink("elsewhere", top.join("d/file")).unwrap();
        std::fs::write(bottom.join("plain"), "x").unwrap();
        let lowers = Lowers::new(vec![top.clone(), bottom.clone()]);
        let d = [os("d")];
        assert_eq!(lowers.lookup(&d, OsStr::new("sub")), Found::Dir);
        assert_eq!(
            lowers.lookup(&d, OsStr::new("link")),
            Found::Symlink(os("sub"))
        );
        assert_eq!(
            lowers.lookup(&d, OsStr::new("file")),
            Found::Symlink(os("elsewhere"))
        );
        assert_eq!(lowers.lookup(&d, OsStr::new("none")), Found::Missing);
        assert_eq!(
            lowers.lookup(&[], OsStr::new("plain")),
            Found::Other { layer: 1 }
        );
        assert!(lowers.contradicts(&[PathBuf::from("d/link")]));
        assert!(!lowers.contradicts(&[PathBuf::from("d/sub"), PathBuf::from("d/new")]));
        // Below a file of the top layer, the bottom layer's directory is hidden.
        std::fs::write(top.join("hidden"), "x").unwrap();
        std::fs::create_dir_all(bottom.join("hidden/deep")).unwrap();
        assert_eq!(
            lowers.lookup(&[os("hidden")], OsStr::new("deep")),
            Found::Missing
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
