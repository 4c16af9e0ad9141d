//! `--gpu auto|emulated|PATH`: which render node vgpu drives, if any.
//! Render nodes are identified by their kernel driver (DRM_IOCTL_VERSION);
//! the first i915 or xe node is used, otherwise the emulated device, and
//! the reason is said either way.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::drm::{DrmDevice, RenderNode};
use super::{GemKernel, I915Kernel, XeKernel};

/// What `--gpu` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuChoice {
    /// The first Intel render node, else the emulated device.
    Auto,
    /// The emulated device.
    Emulated,
    /// This render node (it must be i915 or xe).
    Path(PathBuf),
}

impl GpuChoice {
    /// Parses the CLI spelling.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => Self::Auto,
            "emulated" => Self::Emulated,
            "" => return Err("--gpu needs auto, emulated or a render node path".into()),
            p => Self::Path(PathBuf::from(p)),
        })
    }
}

/// The outcome: a kernel to drive, or none (the emulated device), and why.
pub struct Detected {
    /// The kernel, if an Intel render node is used.
    pub kernel: Option<Arc<dyn GemKernel>>,
    /// The node used.
    pub node: Option<PathBuf>,
    /// Why this choice, for the log and `vgpuctl`.
    pub reason: String,
}

impl fmt::Debug for Detected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detected")
            .field("node", &self.node)
            .field("reason", &self.reason)
            .finish()
    }
}

/// The `renderD*` nodes of `dir`, in order.
pub fn render_nodes(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("renderD"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|p| {
        p.file_name()
            .and_then(|n| {
                n.to_string_lossy()
                    .trim_start_matches("renderD")
                    .parse::<u32>()
                    .ok()
            })
            .unwrap_or(u32::MAX)
    });
    v
}

struct Node(std::fs::File);

impl std::os::fd::AsFd for Node {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl drm::Device for Node {}

/// Opens `path` and asks its kernel driver's name (DRM_IOCTL_VERSION).
pub fn drm_driver_name(path: &Path) -> io::Result<(String, OwnedFd)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let node = Node(file);
    let name = drm::Device::get_driver(&node)?
        .name()
        .to_string_lossy()
        .into_owned();
    Ok((name, OwnedFd::from(node.0)))
}

/// Opens the real kernel driver `name` over the render node `fd`.
pub fn open_kernel(name: &str, fd: OwnedFd) -> io::Result<Arc<dyn GemKernel>> {
    open_driver(name, Arc::new(RenderNode::new(fd)))
}

/// The driver `name` (i915 or xe) over `dev`: a render node, or in tests
/// the fake kernel.
pub fn open_driver(name: &str, dev: Arc<dyn DrmDevice>) -> io::Result<Arc<dyn GemKernel>> {
    Ok(match name {
        "i915" => Arc::new(I915Kernel::new(dev)?),
        "xe" => Arc::new(XeKernel::new(dev)?),
        other => return Err(io::Error::other(format!("{other} is not an Intel driver"))),
    })
}

/// Chooses with the real kernels (see [`choose_with`]).
pub fn choose(choice: &GpuChoice, dri: &Path) -> Result<Detected, String> {
    choose_with(
        choice,
        dri,
        |p| drm_driver_name(p).map(|(n, fd)| (n, Some(fd))),
        |n, fd| match fd {
            Some(fd) => open_kernel(n, fd),
            None => Err(io::Error::other("no descriptor")),
        },
    )
}

/// Chooses a render node: `identify` names a node's driver (and may hand
/// its open descriptor on), `open` makes the kernel driver for it.
pub fn choose_with(
    choice: &GpuChoice,
    dri: &Path,
    identify: impl Fn(&Path) -> io::Result<(String, Option<OwnedFd>)>,
    open: impl Fn(&str, Option<OwnedFd>) -> io::Result<Arc<dyn GemKernel>>,
) -> Result<Detected, String> {
    let intel = |n: &str| n == "i915" || n == "xe";
    match choice {
        GpuChoice::Emulated => Ok(Detected {
            kernel: None,
            node: None,
            reason: "the emulated device, as asked (--gpu emulated)".into(),
        }),
        GpuChoice::Path(p) => {
            let (name, fd) = identify(p).map_err(|e| format!("--gpu {}: {e}", p.display()))?;
            if !intel(&name) {
                return Err(format!(
                    "--gpu {}: driven by {name}, not i915 or xe",
                    p.display()
                ));
            }
            let kernel =
                open(&name, fd).map_err(|e| format!("--gpu {}: {name}: {e}", p.display()))?;
            Ok(Detected {
                kernel: Some(kernel),
                node: Some(p.clone()),
                reason: format!("{} ({name}), as asked", p.display()),
            })
        }
        GpuChoice::Auto => {
            let nodes = render_nodes(dri);
            if nodes.is_empty() {
                return Ok(Detected {
                    kernel: None,
                    node: None,
                    reason: format!("the emulated device: no render node in {}", dri.display()),
                });
            }
            let mut seen = Vec::new();
            for p in nodes {
                match identify(&p) {
                    Ok((name, fd)) if intel(&name) => match open(&name, fd) {
                        Ok(kernel) => {
                            return Ok(Detected {
                                kernel: Some(kernel),
                                node: Some(p.clone()),
                                reason: format!("{} ({name})", p.display()),
                            })
                        }
                        Err(e) => seen.push(format!("{}: {name}, but {e}", p.display())),
                    },
                    Ok((name, _)) => seen.push(format!("{}: {name}", p.display())),
                    Err(e) => seen.push(format!("{}: {e}", p.display())),
                }
            }
            Ok(Detected {
                kernel: None,
                node: None,
                reason: format!(
                    "the emulated device: no Intel render node ({})",
                    seen.join("; ")
                ),
            })
        }
    }
}
