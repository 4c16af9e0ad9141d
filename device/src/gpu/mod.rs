//! The virtio-gpu device state and command dispatch: resources, scanouts,
//! the cursor, contexts, blob mapping. One `VirtioGpu` per connected VM.
//!
//! Every command returns a [`Response`]; failures are [`GpuError`]s mapped
//! to the virtio error codes in one place ([`GpuError::code`]). Nothing a
//! guest sends can make this module panic: every id is looked up with an
//! error for a miss, every count and rectangle is bounded with checked
//! arithmetic, and every guest range is validated against guest memory.
//!
//! Must not: touch the virtqueues (the queue layer owns descriptors and
//! fences) or the buffer manager's internals.

mod blob;
mod context;
mod error;
mod resources;
mod scanout;
mod transfer;

use std::collections::HashMap;
use std::sync::Arc;

use vgpu_backend::{BufferManager, Fence, ObjectId, OwnerId, PinReason, Placement, Priority};
use vgpu_proto::virtio_gpu::*;

use crate::config::{DeviceConfig, Mode};
use crate::context::{Context, NativeEnv};
use crate::display::{to_bgrx_in_place, DisplaySink, CURSOR_BYTES};
use crate::edid::edid_for;
use crate::engine::Engine;
use crate::guest_io::{GuestBacking, GuestMem};
use crate::hostmem::{HostMemMapper, HostMemRegion};
use crate::resource::*;
use crate::screens::{Damage, Screens};

pub use error::GpuError;
pub use scanout::{MAX_SCANOUT_SIDE, UPDATE_BAND_BYTES};

use blob::Quarantined;
use error::GpuResult;
use scanout::{shown_resource, Scanout, Shown};
use transfer::RowsAt;

/// The result of one command for the queue layer.
#[derive(Debug)]
pub struct Outcome {
    /// The response to write.
    pub response: Response,
    /// GPU work the command's fence must wait for.
    pub fence: Option<Fence>,
}

impl From<GpuResult<Response>> for Outcome {
    fn from(r: GpuResult<Response>) -> Self {
        Outcome {
            response: r.unwrap_or_else(|e| {
                log::debug!("command failed: {e}");
                Response::Error(e.code())
            }),
            fence: None,
        }
    }
}

/// Per-VM counters the admin socket and tests read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuStats {
    /// Live resources.
    pub resources: usize,
    /// Live contexts.
    pub contexts: usize,
    /// Backing entries held.
    pub backing_entries: usize,
    /// Host-visible bytes mapped.
    pub hostmem_mapped: u64,
}

/// One VM's virtio-gpu device state.
pub struct VirtioGpu {
    cfg: Arc<DeviceConfig>,
    bm: BufferManager,
    vm: OwnerId,
    resources: HashMap<ResourceId, Resource>,
    contexts: HashMap<ContextId, Context>,
    scanouts: Vec<Scanout>,
    display: Option<Box<dyn DisplaySink>>,
    mapper: Option<Arc<dyn HostMemMapper>>,
    hostmem: HostMemRegion,
    engine: Engine,
    backing_entries: usize,
    cursor_visible: bool,
    cursor_scanout: u32,
    /// Pixels of the last display update, kept so that the next one of
    /// the same size reuses warm memory.
    update_scratch: Vec<u8>,
    /// The changed part of a display update, gathered for sending.
    damage_scratch: Vec<u8>,
    /// Accounts of destroyed contexts whose objects live on as resources
    /// (e.g. a client's buffers a compositor still shows); each goes when
    /// its last object does.
    orphaned_accounts: std::collections::HashSet<OwnerId>,
    /// Mappings whose SHMEM_UNMAP the VMM failed: it may still map their
    /// pages into the guest, so they stay alive (objects pinned, scratch
    /// ranges counted) and their host-visible range taken until the
    /// connection ends.
    quarantine: Vec<Quarantined>,
    /// Purges of blobs the guest maps, to remap over scratch memory.
    purge_watch: Option<vgpu_backend::PurgeWatch>,
    /// What each scanout shows, kept for the admin socket's screenshots
    /// whether or not a display channel exists.
    screens: Screens,
}

impl std::fmt::Debug for VirtioGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioGpu")
            .field("vm", &self.vm)
            .field("resources", &self.resources.len())
            .field("contexts", &self.contexts.len())
            .finish()
    }
}

impl VirtioGpu {
    /// A device for the VM whose buffer-manager account is `vm`.
    pub fn new(cfg: Arc<DeviceConfig>, bm: BufferManager, vm: OwnerId) -> Self {
        Self::with_screens(cfg, bm, vm, Screens::default())
    }

    /// As [`Self::new`], keeping what the scanouts show in `screens`.
    pub fn with_screens(
        cfg: Arc<DeviceConfig>,
        bm: BufferManager,
        vm: OwnerId,
        screens: Screens,
    ) -> Self {
        let scanouts = cfg
            .scanouts
            .iter()
            .map(|m| Scanout {
                mode: *m,
                shown: Shown::Nothing,
                announced: (0, 0),
                display_in_sync: false,
            })
            .collect();
        let hostmem = HostMemRegion::new(cfg.hostmem_size, cfg.limits.max_hostmem_mapped);
        let engine = Engine::new(cfg.exec_delay);
        Self {
            cfg,
            bm,
            vm,
            resources: HashMap::new(),
            contexts: HashMap::new(),
            scanouts,
            display: None,
            mapper: None,
            hostmem,
            engine,
            backing_entries: 0,
            cursor_visible: false,
            cursor_scanout: 0,
            update_scratch: Vec::new(),
            damage_scratch: Vec::new(),
            orphaned_accounts: std::collections::HashSet::new(),
            quarantine: Vec::new(),
            purge_watch: None,
            screens,
        }
        .watching_purges()
    }

    fn watching_purges(mut self) -> Self {
        match self.bm.watch_purges(self.vm) {
            Ok(w) => self.purge_watch = Some(w),
            Err(e) => log::warn!(
                "cannot watch purges of mapped blobs ({e}): purged blobs stay mapped until unmapped"
            ),
        }
        self
    }

    /// The VM's buffer-manager account.
    pub fn vm(&self) -> OwnerId {
        self.vm
    }

    /// Connects (or replaces) the display channel.
    pub fn set_display(&mut self, display: Option<Box<dyn DisplaySink>>) {
        self.display = display;
        for s in &mut self.scanouts {
            s.announced = (0, 0);
            s.display_in_sync = false;
        }
        // Re-announce what is shown: the new channel starts blank.
        for i in 0..self.scanouts.len() {
            self.announce(i as u32);
        }
    }

    /// Connects the host-visible region's mapper (SHMEM_MAP channel).
    pub fn set_mapper(&mut self, mapper: Option<Arc<dyn HostMemMapper>>) {
        self.mapper = mapper;
    }

    /// The engine (the queue layer polls it for fences).
    pub fn engine(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// Counters.
    pub fn stats(&self) -> GpuStats {
        GpuStats {
            resources: self.resources.len(),
            contexts: self.contexts.len(),
            backing_entries: self.backing_entries,
            hostmem_mapped: self.hostmem.mapped_bytes(),
        }
    }

    /// Forgets every resource and context and frees all their host memory
    /// (device reset, or the driver starting over). Mappings are undone.
    pub fn reset(&mut self) {
        let ids: Vec<ResourceId> = self.resources.keys().copied().collect();
        for id in ids {
            let _ = self.resource_unref(id);
        }
        let ctxs: Vec<ContextId> = self.contexts.keys().copied().collect();
        for id in ctxs {
            let _ = self.ctx_destroy(id);
        }
        for i in 0..self.scanouts.len() {
            self.scanouts[i].shown = Shown::Nothing;
            self.announce(i as u32);
        }
        self.engine.finish_all();
        self.backing_entries = 0;
        self.cursor_visible = false;
    }

    /// Executes one decoded command.
    pub fn process(&mut self, cmd: &Command<'_>, mem: &GuestMem) -> Outcome {
        let result = match cmd {
            Command::GetDisplayInfo(_) => Ok(self.get_display_info()),
            Command::GetEdid(c) => self.get_edid(c.scanout.get()),
            Command::ResourceCreate2d(c) => self.resource_create_2d(c),
            Command::ResourceUnref(c) => self
                .resource_unref(ResourceId(c.resource_id.get()))
                .map(|_| Response::OkNoData),
            Command::SetScanout(c) => self.set_scanout(c),
            Command::ResourceFlush(c) => self.resource_flush(c, mem),
            Command::TransferToHost2d(c) => self.transfer_to_host_2d(c, mem),
            Command::ResourceAttachBacking { cmd, entries } => {
                self.resource_attach_backing(ResourceId(cmd.resource_id.get()), entries, mem)
            }
            Command::ResourceDetachBacking(c) => {
                self.resource_detach_backing(ResourceId(c.resource_id.get()))
            }
            Command::GetCapsetInfo(c) => self.get_capset_info(c.capset_index.get()),
            Command::GetCapset(c) => self.get_capset(c.capset_id.get(), c.capset_version.get()),
            Command::ResourceAssignUuid(c) => {
                self.resource_assign_uuid(ResourceId(c.resource_id.get()))
            }
            Command::ResourceCreateBlob { cmd, entries } => {
                self.resource_create_blob(cmd, entries, mem)
            }
            Command::SetScanoutBlob(c) => self.set_scanout_blob(c),
            Command::CtxCreate(c) => self.ctx_create(c),
            Command::CtxDestroy(c) => self
                .ctx_destroy(ContextId(c.hdr.ctx_id.get()))
                .map(|_| Response::OkNoData),
            Command::CtxAttachResource(c) => self.ctx_attach_resource(
                ContextId(c.hdr.ctx_id.get()),
                ResourceId(c.resource_id.get()),
            ),
            Command::CtxDetachResource(c) => self.ctx_detach_resource(
                ContextId(c.hdr.ctx_id.get()),
                ResourceId(c.resource_id.get()),
            ),
            Command::ResourceCreate3d(c) => self.resource_create_3d(c),
            Command::TransferToHost3d(c) => self.transfer_to_host_3d(c, mem),
            Command::TransferFromHost3d(c) => self.transfer_from_host_3d(c, mem),
            Command::Submit3d { cmd, data } => {
                return self.submit_3d(ContextId(cmd.hdr.ctx_id.get()), data)
            }
            Command::ResourceMapBlob(c) => {
                self.resource_map_blob(ResourceId(c.resource_id.get()), c.offset.get())
            }
            Command::ResourceUnmapBlob(c) => self
                .resource_unmap_blob(ResourceId(c.resource_id.get()))
                .map(|_| Response::OkNoData),
            Command::UpdateCursor(c) => self.update_cursor(c),
            Command::MoveCursor(c) => self.move_cursor(c),
        };
        result.into()
    }
}
