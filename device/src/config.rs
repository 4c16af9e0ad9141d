//! The device's configuration: scanouts, memory sizes, quotas, limits and
//! feature choices. Built by the CLI, used by every connection.

use std::time::Duration;

use vgpu_backend::region::DEFAULT_DEVICE_POOL_SIZE;

/// Default size of the buffer cache.
pub const DEFAULT_BUFFER_CACHE: u64 = 64 << 20;

/// A display mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Mode {
    /// Smallest mode accepted.
    pub const MIN: u32 = 64;
    /// Largest mode accepted (an EDID detailed timing holds 12 bits).
    pub const MAX: u32 = 4095;

    /// Parses `WIDTHxHEIGHT`.
    pub fn parse(s: &str) -> Result<Mode, String> {
        let (w, h) = s
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("mode {s:?} is not WIDTHxHEIGHT"))?;
        let parse = |v: &str, what: &str| -> Result<u32, String> {
            let n: u32 = v
                .trim()
                .parse()
                .map_err(|_| format!("mode {s:?}: {what} {v:?} is not a number"))?;
            if !(Self::MIN..=Self::MAX).contains(&n) {
                return Err(format!(
                    "mode {s:?}: {what} {n} is outside {}..={}",
                    Self::MIN,
                    Self::MAX
                ));
            }
            Ok(n)
        };
        Ok(Mode {
            width: parse(w, "width")?,
            height: parse(h, "height")?,
        })
    }
}

/// Per-VM caps on what a guest can make the daemon hold (hostile guests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Live resources.
    pub max_resources: usize,
    /// Live contexts.
    pub max_contexts: usize,
    /// Backing mem entries held across all resources.
    pub max_backing_entries: usize,
    /// Bytes of the host-visible region mapped at once.
    pub max_hostmem_mapped: u64,
    /// Native-context objects (GEM) not yet turned into resources, per context.
    pub max_context_objects: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_resources: 1 << 16,
            max_contexts: 256,
            max_backing_entries: 1 << 22,
            max_hostmem_mapped: u64::MAX,
            max_context_objects: 1 << 16,
        }
    }
}

/// Everything a connection needs to know.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Scanouts and their preferred modes (1 to 16).
    pub scanouts: Vec<Mode>,
    /// Bytes of the emulated device-local pool.
    pub device_memory: u64,
    /// Bytes of freed buffers' files kept for reuse (0: none).
    pub buffer_cache: u64,
    /// Per-VM memory quota (`None`: unlimited).
    pub vm_quota: Option<u64>,
    /// Per-VM soft limit (`None`: none).
    pub vm_soft_limit: Option<u64>,
    /// Size of the host-visible shared-memory region (shmid 1).
    pub hostmem_size: u64,
    /// Offer VIRTIO_GPU_F_VIRGL (needed for context commands in Linux
    /// guests; QEMU displays without GL refuse it).
    pub virgl: bool,
    /// How long the emulated engine "executes" a GEM_EXECBUFFER2.
    pub exec_delay: Duration,
    /// Per-VM caps.
    pub limits: Limits,
    /// PCI device id reported in the DRM capset and I915_PARAM_CHIPSET_ID.
    pub pci_device_id: u16,
    /// Largest window the worker watches the control queue for the next
    /// command before sleeping (adaptive; zero: never).
    pub poll_max: Duration,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            scanouts: vec![Mode {
                width: 1280,
                height: 800,
            }],
            device_memory: DEFAULT_DEVICE_POOL_SIZE,
            buffer_cache: DEFAULT_BUFFER_CACHE,
            vm_quota: None,
            vm_soft_limit: None,
            hostmem_size: 1 << 30,
            virgl: true,
            exec_delay: Duration::ZERO,
            limits: Limits::default(),
            pci_device_id: 0,
            poll_max: crate::vhost::poll::DEFAULT_MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_reject_nonsense() {
        assert_eq!(
            Mode::parse("1920x1080"),
            Ok(Mode {
                width: 1920,
                height: 1080
            })
        );
        assert_eq!(Mode::parse("640X480").map(|m| m.height), Ok(480));
        for bad in ["1920", "x", "0x0", "10x10", "5000x100", "axb", "-1x600"] {
            assert!(Mode::parse(bad).is_err(), "{bad}");
        }
    }
}
