//! GETPARAM and GET_CAPS: what the guest driver was offered.

use std::os::fd::AsFd;

use vgpu_proto::native::CapsetDrmI915;
use zerocopy::FromBytes;

use crate::card::Card;
use crate::report::Outcome;
use crate::uapi;

/// What the driver reports; `None` where the kernel does not know the param.
#[derive(Debug, Clone, Default)]
pub struct Params {
    /// Values by `uapi::PARAMS` index.
    pub values: Vec<Option<i32>>,
}

impl Params {
    /// The value of param number `n` (1-based, as in the uapi), 0 if unknown.
    pub fn get(&self, n: u64) -> i32 {
        self.values
            .get((n as usize).wrapping_sub(1))
            .copied()
            .flatten()
            .unwrap_or(0)
    }
}

/// Reads every param; fails only if GETPARAM itself is broken.
pub fn getparams(card: &Card) -> (Params, Outcome) {
    let mut p = Params::default();
    let mut shown = Vec::new();
    for (n, name) in uapi::PARAMS {
        match uapi::getparam(card.as_fd(), n) {
            Ok(v) => {
                p.values.push(Some(v));
                shown.push(if n == 7 {
                    format!("{name}={v:#x}")
                } else {
                    format!("{name}={v}")
                });
            }
            // Older kernels do not know the later params.
            Err(e) if e.raw_os_error() == Some(22) => {
                p.values.push(None);
                shown.push(format!("{name}=n/a"));
            }
            Err(e) => return (p, Outcome::Fail(format!("GETPARAM {name}: {e}"))),
        }
    }
    (p, Outcome::Pass(shown.join(" ")))
}

/// GET_CAPS of the DRM native-context capset (id 6), when 3D is offered.
pub fn capsets(card: &Card, params: &Params) -> Outcome {
    if params.get(1) == 0 {
        return Outcome::Skip("no 3D features: the device offers no capsets".into());
    }
    // The kernel copies min(our size, the host's max_size) bytes.
    let mut buf = vec![0u8; 256];
    match uapi::get_caps(card.as_fd(), 6, 0, &mut buf) {
        Ok(()) => match CapsetDrmI915::read_from_prefix(&buf) {
            Ok((caps, _)) if caps.header.context_type.get() != 3 => Outcome::Fail(format!(
                "DRM capset names context type {}, not i915 (3)",
                caps.header.context_type.get()
            )),
            Ok((caps, _)) => Outcome::Pass(format!(
                "DRM capset: wire format {}, i915 {}.{}, PCI device id {:#06x}",
                caps.header.wire_format_version.get(),
                caps.header.version_major.get(),
                caps.header.version_minor.get(),
                caps.intel.pci_device_id.get()
            )),
            Err(_) => Outcome::Fail("DRM capset shorter than its layout".into()),
        },
        Err(e) => Outcome::Fail(format!("GET_CAPS 6: {e}")),
    }
}
