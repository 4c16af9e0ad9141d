//! 3D contexts: what CTX_CREATE makes. A context has an owner account in
//! the buffer manager (a child of its VM's), the resources attached to it,
//! and — for a native context — a [`ContextBackend`] that runs its command
//! stream and owns its host objects until they become resources. The
//! dispatcher knows contexts only through that trait; the capsets a
//! device offers and the backend each makes are listed here.
//!
//! Must not: touch the virtqueues or the display.

pub mod gem_contexts;
pub mod i915;
mod i915_emulated;
pub mod i915_exec;
pub mod i915_ioctl;
mod i915_params;

use vgpu_backend::{BoError, BufferManager, ObjectId, OwnerId};
use vgpu_proto::native::CapsetDrmI915;
use vgpu_proto::virtio_gpu::VIRTIO_GPU_CAPSET_DRM;
use zerocopy::IntoBytes;

use crate::config::DeviceConfig;
use crate::resource::{MapCaching, ResourceId};

pub use i915::{I915Context, NativeEnv, SubmitError, SubmitOutcome};

/// Why a context refused a request the dispatcher passed it.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The request names something the context does not have, or asks
    /// for something it does not allow (the message says which).
    #[error("{0}")]
    Refused(String),
    /// The buffer manager refused or failed.
    #[error(transparent)]
    Buffer(#[from] BoError),
}

/// The host object a HOST3D blob of a context is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextBlob {
    /// The buffer.
    pub object: ObjectId,
    /// The caching the context configured for the guest's mappings.
    pub map_caching: Option<MapCaching>,
}

/// What the dispatcher asks of a native context. The context owns its
/// protocol state; the dispatcher owns resources and calls these at the
/// points of their life the context must know about.
pub trait ContextBackend: std::fmt::Debug + Send {
    /// The object HOST3D blob `blob_id` of `size` bytes names, about to
    /// become resource `res_id` (created in the context's account `owner`
    /// when the context makes it on demand).
    fn create_blob(
        &mut self,
        bm: &BufferManager,
        owner: OwnerId,
        blob_id: u64,
        size: u64,
        res_id: ResourceId,
    ) -> Result<ContextBlob, ContextError>;
    /// Runs a SUBMIT_3D command stream.
    fn submit(&mut self, stream: &[u8], env: &mut NativeEnv<'_>) -> SubmitOutcome;
    /// Resource `res_id` was attached to (or detached from) the context.
    fn attach(&mut self, _res_id: ResourceId, _attached: bool) {}
    /// Resource `res_id` is gone (unref or reset).
    fn resource_gone(&mut self, _res_id: ResourceId) {}
    /// The context is being destroyed: release what it holds outside the
    /// resource table (objects not yet resources, kernel objects).
    fn teardown(&mut self, bm: &BufferManager);
}

/// The capsets the device offers (only the DRM native context's, with
/// VIRGL).
pub fn num_capsets(cfg: &DeviceConfig) -> u32 {
    u32::from(cfg.virgl)
}

/// Capset index `index`: its id, highest version and size.
pub fn capset_info(cfg: &DeviceConfig, index: u32) -> Option<(u32, u32, u32)> {
    (index < num_capsets(cfg)).then_some((
        VIRTIO_GPU_CAPSET_DRM,
        0,
        size_of::<CapsetDrmI915>() as u32,
    ))
}

/// The bytes of capset `id` at `version`, if offered.
pub fn capset(cfg: &DeviceConfig, id: u32, version: u32) -> Option<Vec<u8>> {
    (id == VIRTIO_GPU_CAPSET_DRM && version == 0 && num_capsets(cfg) > 0)
        .then(|| I915Context::capset(cfg).as_bytes().to_vec())
}

/// The backend a CTX_CREATE naming `capset_id` gets: `Ok(None)` for a
/// plain context (capset 0: the Linux driver makes one per DRM file; it
/// holds resources but runs no commands); `Err` for capsets not offered.
pub fn backend_for(
    cfg: &DeviceConfig,
    capset_id: u32,
) -> Result<Option<Box<dyn ContextBackend>>, ContextError> {
    match capset_id {
        0 => Ok(None),
        VIRTIO_GPU_CAPSET_DRM if num_capsets(cfg) > 0 => Ok(Some(Box::new(I915Context::new()))),
        other => Err(ContextError::Refused(format!(
            "capset {other} is not offered"
        ))),
    }
}

/// One context.
#[derive(Debug)]
pub struct Context {
    /// Its buffer-manager account (named after the context's id and the
    /// debug name the guest gave).
    pub owner: OwnerId,
    /// Its command-stream backend (`None`: a plain context).
    pub backend: Option<Box<dyn ContextBackend>>,
}
