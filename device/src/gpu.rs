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

use std::collections::HashMap;
use std::sync::Arc;

use vgpu_backend::{
    BoError, BufferManager, Fence, ObjectId, OwnerId, PinReason, Placement, Priority,
};
use vgpu_proto::virtio_gpu::*;
use zerocopy::IntoBytes;

use crate::config::{DeviceConfig, Mode};
use crate::context::{Context, ContextKind, I915Context, NativeEnv};
use crate::display::{to_bgrx_in_place, DisplaySink, CURSOR_BYTES};
use crate::edid::edid_for;
use crate::engine::Engine;
use crate::guest_io::{BackingError, GuestBacking, GuestMem};
use crate::hostmem::{HostMemError, HostMemMapper, HostMemRegion};
use crate::resource::*;
use crate::screens::Screens;

/// The largest scanout rectangle a guest may show, per side (the Linux
/// virtio-gpu driver's XRES_MAX / YRES_MAX).
pub const MAX_SCANOUT_SIDE: u32 = 8192;
/// Display updates go out in bands of whole rows of at most this many
/// bytes (a 2560×1440 frame is one band), so a flush never needs more
/// memory than this, however large the shown rectangle.
pub const UPDATE_BAND_BYTES: usize = 16 << 20;

/// Refuses scanout rectangles larger than any display vgpu drives.
fn check_scanout_side(r: &Rect) -> GpuResult<()> {
    let (w, h) = (r.width.get(), r.height.get());
    if w > MAX_SCANOUT_SIDE || h > MAX_SCANOUT_SIDE {
        return Err(GpuError::InvalidParameter(format!(
            "scanout rectangle {w}x{h} is larger than {MAX_SCANOUT_SIDE}x{MAX_SCANOUT_SIDE}"
        )));
    }
    Ok(())
}

/// Why a command failed; [`GpuError::code`] is the response.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// Unknown, zero or reused resource id.
    #[error("invalid resource id {0}")]
    InvalidResource(u32),
    /// Unknown, zero or reused context id.
    #[error("invalid context id {0}")]
    InvalidContext(u32),
    /// Scanout id beyond the device's.
    #[error("invalid scanout id {0}")]
    InvalidScanout(u32),
    /// A parameter out of range or not allowed for this resource.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// Out of memory: quota, device full, host refusal, or a per-VM cap.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// A failure the spec has no better code for.
    #[error("{0}")]
    Unspec(String),
}

impl GpuError {
    /// The virtio-gpu error response.
    pub fn code(&self) -> ErrorCode {
        match self {
            GpuError::InvalidResource(_) => ErrorCode::InvalidResourceId,
            GpuError::InvalidContext(_) => ErrorCode::InvalidContextId,
            GpuError::InvalidScanout(_) => ErrorCode::InvalidScanoutId,
            GpuError::InvalidParameter(_) => ErrorCode::InvalidParameter,
            GpuError::OutOfMemory(_) => ErrorCode::OutOfMemory,
            GpuError::Unspec(_) => ErrorCode::Unspec,
        }
    }
}

impl From<BoError> for GpuError {
    fn from(e: BoError) -> Self {
        if e.is_out_of_memory() {
            return GpuError::OutOfMemory(e.to_string());
        }
        match e {
            BoError::Purged(_)
            | BoError::Pinned(_)
            | BoError::OutOfRange { .. }
            | BoError::InvalidSize { .. } => GpuError::InvalidParameter(e.to_string()),
            other => GpuError::Unspec(other.to_string()),
        }
    }
}

impl From<BoundsError> for GpuError {
    fn from(e: BoundsError) -> Self {
        GpuError::InvalidParameter(e.to_string())
    }
}

impl From<BackingError> for GpuError {
    fn from(e: BackingError) -> Self {
        GpuError::InvalidParameter(e.to_string())
    }
}

impl From<HostMemError> for GpuError {
    fn from(e: HostMemError) -> Self {
        match e {
            HostMemError::OverLimit { .. } => GpuError::OutOfMemory(e.to_string()),
            _ => GpuError::InvalidParameter(e.to_string()),
        }
    }
}

type GpuResult<T> = Result<T, GpuError>;

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

/// What a scanout shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Shown {
    #[default]
    Nothing,
    /// A 2D image resource: the rect `(x, y, w, h)` of it.
    Image {
        resource: u32,
        rect: (u32, u32, u32, u32),
    },
    /// A blob, read with this layout.
    Blob {
        resource: u32,
        rect: (u32, u32, u32, u32),
        format: Format,
        stride: u32,
        offset: u32,
    },
}

#[derive(Debug, Clone, Copy)]
struct Scanout {
    mode: Mode,
    shown: Shown,
    /// Size last announced to the display (0×0: disabled).
    announced: (u32, u32),
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
    resources: HashMap<u32, Resource>,
    contexts: HashMap<u32, Context>,
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

/// A mapping the VMM failed to unmap.
#[derive(Debug, Clone, Copy)]
enum Quarantined {
    /// A pinned object at a host-visible offset.
    Object(ObjectId, u64),
    /// A scratch range (offset, length).
    Scratch(u64, u64),
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

    /// Number of capsets offered (only the DRM one, with VIRGL).
    pub fn num_capsets(&self) -> u32 {
        u32::from(self.cfg.virgl)
    }

    /// Frees what failed unmaps kept (the connection to the VMM is gone,
    /// and with it the guest's mappings).
    pub fn release_quarantine(&mut self) {
        for q in std::mem::take(&mut self.quarantine) {
            match q {
                Quarantined::Object(obj, offset) => {
                    let _ = self.bm.unpin(obj, PinReason::Mapped);
                    let _ = self.bm.destroy(obj);
                    self.hostmem.release(offset);
                }
                Quarantined::Scratch(offset, len) => {
                    let _ = self.bm.scratch_unmap(self.vm, len);
                    self.hostmem.release(offset);
                }
            }
        }
    }

    /// Forgets every resource and context and frees all their host memory
    /// (device reset, or the driver starting over). Mappings are undone.
    pub fn reset(&mut self) {
        let ids: Vec<u32> = self.resources.keys().copied().collect();
        for id in ids {
            let _ = self.unref(id);
        }
        let ctxs: Vec<u32> = self.contexts.keys().copied().collect();
        for id in ctxs {
            let _ = self.destroy_context(id);
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
            Command::GetDisplayInfo(_) => Ok(self.display_info()),
            Command::GetEdid(c) => self.get_edid(c.scanout.get()),
            Command::ResourceCreate2d(c) => self.create_2d(c),
            Command::ResourceUnref(c) => {
                self.unref(c.resource_id.get()).map(|_| Response::OkNoData)
            }
            Command::SetScanout(c) => self.set_scanout(c),
            Command::ResourceFlush(c) => self.flush(c, mem),
            Command::TransferToHost2d(c) => self.transfer_to_host_2d(c, mem),
            Command::ResourceAttachBacking { cmd, entries } => {
                self.attach_backing(cmd.resource_id.get(), entries, mem)
            }
            Command::ResourceDetachBacking(c) => self.detach_backing(c.resource_id.get()),
            Command::GetCapsetInfo(c) => self.capset_info(c.capset_index.get()),
            Command::GetCapset(c) => self.capset(c.capset_id.get(), c.capset_version.get()),
            Command::ResourceAssignUuid(c) => self.assign_uuid(c.resource_id.get()),
            Command::ResourceCreateBlob { cmd, entries } => self.create_blob(cmd, entries, mem),
            Command::SetScanoutBlob(c) => self.set_scanout_blob(c),
            Command::CtxCreate(c) => self.create_context(c),
            Command::CtxDestroy(c) => self
                .destroy_context(c.hdr.ctx_id.get())
                .map(|_| Response::OkNoData),
            Command::CtxAttachResource(c) => {
                self.ctx_attach(c.hdr.ctx_id.get(), c.resource_id.get(), true)
            }
            Command::CtxDetachResource(c) => {
                self.ctx_attach(c.hdr.ctx_id.get(), c.resource_id.get(), false)
            }
            Command::ResourceCreate3d(c) => self.create_3d(c),
            Command::TransferToHost3d(c) => self.transfer_3d(c, mem, true),
            Command::TransferFromHost3d(c) => self.transfer_3d(c, mem, false),
            Command::Submit3d { cmd, data } => return self.submit_3d(cmd.hdr.ctx_id.get(), data),
            Command::ResourceMapBlob(c) => self.map_blob(c.resource_id.get(), c.offset.get()),
            Command::ResourceUnmapBlob(c) => self
                .unmap_blob(c.resource_id.get())
                .map(|_| Response::OkNoData),
            Command::UpdateCursor(c) => self.update_cursor(c),
            Command::MoveCursor(c) => self.move_cursor(c),
        };
        result.into()
    }

    // ---- display -------------------------------------------------------

    fn display_info(&mut self) -> Response {
        if let Some(modes) = self.display.as_mut().and_then(|d| d.display_info()) {
            for (s, m) in self.scanouts.iter_mut().zip(&modes) {
                if m.enabled && m.width >= Mode::MIN && m.height >= Mode::MIN {
                    s.mode = Mode {
                        width: m.width.min(Mode::MAX),
                        height: m.height.min(Mode::MAX),
                    };
                }
            }
        }
        let mut pmodes = [DisplayOne::default(); VIRTIO_GPU_MAX_SCANOUTS];
        for (p, s) in pmodes.iter_mut().zip(&self.scanouts) {
            p.r = Rect::new(0, 0, s.mode.width, s.mode.height);
            p.enabled = 1.into();
        }
        Response::DisplayInfo(Box::new(pmodes))
    }

    fn get_edid(&mut self, scanout: u32) -> GpuResult<Response> {
        let s = self
            .scanouts
            .get(scanout as usize)
            .ok_or_else(|| GpuError::InvalidParameter(format!("EDID of scanout {scanout}")))?;
        let edid = edid_for(s.mode, scanout + 1);
        Ok(Response::Edid(edid.to_vec()))
    }

    fn scanout(&self, id: u32) -> GpuResult<usize> {
        let i = id as usize;
        if i < self.scanouts.len() {
            Ok(i)
        } else {
            Err(GpuError::InvalidScanout(id))
        }
    }

    /// Tells the display the size of what scanout `i` shows, if it changed
    /// (QEMU lags when told again while enabled).
    fn announce(&mut self, i: u32) {
        let Some(s) = self.scanouts.get(i as usize) else {
            return;
        };
        let size = match s.shown {
            Shown::Nothing => (0, 0),
            Shown::Image { rect, .. } | Shown::Blob { rect, .. } => (rect.2, rect.3),
        };
        self.screens.set_scanout(i, size.0, size.1);
        if size == s.announced {
            return;
        }
        if let Some(d) = self.display.as_mut() {
            if let Err(e) = d.set_scanout(i, size.0, size.1) {
                log::warn!("display: SCANOUT {i} failed: {e}");
            }
        }
        self.scanouts[i as usize].announced = size;
    }

    fn show(&mut self, scanout: usize, shown: Shown) -> GpuResult<()> {
        let old = self.scanouts[scanout].shown;
        let new_res = shown_resource(shown);
        if let Some(res) = new_res {
            if shown_resource(old) != Some(res) {
                self.pin_for_scanout(res)?;
            }
        }
        if let Some(old_res) = shown_resource(old) {
            if Some(old_res) != new_res {
                self.unpin_for_scanout(old_res, scanout);
            }
        }
        if let Some(res) = new_res {
            if let Some(r) = self.resources.get_mut(&res) {
                r.scanouts |= 1 << scanout;
            }
        }
        self.scanouts[scanout].shown = shown;
        self.announce(scanout as u32);
        Ok(())
    }

    fn pin_for_scanout(&mut self, res: u32) -> GpuResult<()> {
        let r = self
            .resources
            .get(&res)
            .ok_or(GpuError::InvalidResource(res))?;
        if r.scanouts == 0 {
            if let Some(obj) = r.object() {
                self.bm.pin(obj, PinReason::Scanout)?;
            }
        }
        Ok(())
    }

    fn unpin_for_scanout(&mut self, res: u32, scanout: usize) {
        if let Some(r) = self.resources.get_mut(&res) {
            r.scanouts &= !(1 << scanout);
            if r.scanouts == 0 {
                if let Some(obj) = r.object() {
                    let _ = self.bm.unpin(obj, PinReason::Scanout);
                }
            }
        }
    }

    /// The scanout a SET_SCANOUT(_BLOB) names and the resource it is to
    /// show; `None` once resource 0 turned the scanout off.
    fn scanout_request(
        &mut self,
        scanout_id: u32,
        res_id: u32,
    ) -> GpuResult<Option<(usize, &Resource)>> {
        let scanout = self.scanout(scanout_id)?;
        if res_id == 0 {
            self.show(scanout, Shown::Nothing)?;
            return Ok(None);
        }
        let r = self
            .resources
            .get(&res_id)
            .ok_or(GpuError::InvalidResource(res_id))?;
        Ok(Some((scanout, r)))
    }

    fn set_scanout(&mut self, c: &SetScanout) -> GpuResult<Response> {
        let res_id = c.resource_id.get();
        let Some((scanout, r)) = self.scanout_request(c.scanout_id.get(), res_id)? else {
            return Ok(Response::OkNoData);
        };
        let (_, width, height) = r.image().ok_or_else(|| {
            GpuError::InvalidParameter(format!("resource {res_id} is not an image"))
        })?;
        check_rect(&c.r, width, height, false)?;
        check_scanout_side(&c.r)?;
        let rect = (c.r.x.get(), c.r.y.get(), c.r.width.get(), c.r.height.get());
        self.show(
            scanout,
            Shown::Image {
                resource: res_id,
                rect,
            },
        )?;
        Ok(Response::OkNoData)
    }

    fn set_scanout_blob(&mut self, c: &SetScanoutBlob) -> GpuResult<Response> {
        let res_id = c.resource_id.get();
        let Some((scanout, r)) = self.scanout_request(c.scanout_id.get(), res_id)? else {
            return Ok(Response::OkNoData);
        };
        let ResourceKind::Blob { size, .. } = r.kind else {
            return Err(GpuError::InvalidParameter(format!(
                "resource {res_id} is not a blob"
            )));
        };
        let format = Format::from_u32(c.format.get())
            .ok_or_else(|| GpuError::InvalidParameter(format!("format {}", c.format.get())))?;
        let (width, height) = (c.width.get(), c.height.get());
        check_rect(&c.r, width, height, false)?;
        check_scanout_side(&c.r)?;
        let stride = c.strides[0].get();
        let offset = c.offsets[0].get();
        let row = u64::from(width) * BPP;
        let end = u64::from(height.saturating_sub(1))
            .checked_mul(u64::from(stride))
            .and_then(|last| last.checked_add(u64::from(offset)))
            .and_then(|v| v.checked_add(row));
        if u64::from(stride) < row || width == 0 || height == 0 || end.is_none_or(|e| e > size) {
            return Err(GpuError::InvalidParameter(format!(
                "blob scanout {width}x{height} stride {stride} offset {offset} does not fit the {size}-byte blob"
            )));
        }
        let rect = (c.r.x.get(), c.r.y.get(), c.r.width.get(), c.r.height.get());
        self.show(
            scanout,
            Shown::Blob {
                resource: res_id,
                rect,
                format,
                stride,
                offset,
            },
        )?;
        Ok(Response::OkNoData)
    }

    fn flush(&mut self, c: &ResourceFlush, mem: &GuestMem) -> GpuResult<Response> {
        let res_id = c.resource_id.get();
        let r = self
            .resources
            .get(&res_id)
            .ok_or(GpuError::InvalidResource(res_id))?;
        if let Some((_, w, h)) = r.image() {
            check_rect(&c.r, w, h, true)?;
        }
        if r.scanouts == 0 {
            return Ok(Response::OkNoData);
        }
        let flush = (c.r.x.get(), c.r.y.get(), c.r.width.get(), c.r.height.get());
        for i in 0..self.scanouts.len() {
            let shown = self.scanouts[i].shown;
            if shown_resource(shown) != Some(res_id) {
                continue;
            }
            if let Err(e) = self.send_update(i as u32, shown, flush, mem) {
                log::warn!("display update of scanout {i} failed: {e}");
            }
        }
        Ok(Response::OkNoData)
    }

    /// Sends the part of `flush` (resource coordinates) that scanout `i`
    /// shows, converted to B, G, R, X.
    fn send_update(
        &mut self,
        i: u32,
        shown: Shown,
        flush: (u32, u32, u32, u32),
        mem: &GuestMem,
    ) -> GpuResult<()> {
        let (rect, format, stride, base, res_id) = match shown {
            Shown::Nothing => return Ok(()),
            Shown::Image { resource, rect } => {
                let r = self
                    .resources
                    .get(&resource)
                    .ok_or(GpuError::InvalidResource(resource))?;
                let (format, width, _) = r.image().ok_or(GpuError::InvalidResource(resource))?;
                (rect, format, width * 4, 0u64, resource)
            }
            Shown::Blob {
                resource,
                rect,
                format,
                stride,
                offset,
            } => (rect, format, stride, u64::from(offset), resource),
        };
        let Some((x, y, w, h)) = intersect(rect, flush) else {
            return Ok(());
        };
        let row = w as usize * 4;
        let band = u32::try_from((UPDATE_BAND_BYTES / row.max(1)).max(1)).unwrap_or(u32::MAX);
        let mut pixels = std::mem::take(&mut self.update_scratch);
        let mut sent = Ok(());
        let mut done = 0u32;
        while done < h && sent.is_ok() {
            let rows = band.min(h - done);
            let top = y + done;
            pixels.clear();
            pixels.resize(row * rows as usize, 0);
            let first = base + u64::from(top) * u64::from(stride) + u64::from(x) * 4;
            let read = self.read_rows(res_id, first, u64::from(stride), row, &mut pixels, mem);
            sent = read.and_then(|()| {
                for line in pixels.chunks_exact_mut(row) {
                    to_bgrx_in_place(format, line, false);
                }
                self.screens
                    .update(i, x - rect.0, top - rect.1, w, rows, &pixels);
                match self.display.as_mut() {
                    Some(d) => d
                        .update(i, x - rect.0, top - rect.1, w, rows, &pixels)
                        .map_err(|e| GpuError::Unspec(e.to_string())),
                    None => Ok(()),
                }
            });
            done += rows;
        }
        self.update_scratch = pixels;
        sent
    }

    /// Reads `out.len() / row` rows of `row` bytes, `stride` apart, from
    /// offset `first` of a resource: from the buffer's mapping in one go
    /// when it has one, else row by row.
    fn read_rows(
        &self,
        res_id: u32,
        first: u64,
        stride: u64,
        row: usize,
        out: &mut [u8],
        mem: &GuestMem,
    ) -> GpuResult<()> {
        let r = self
            .resources
            .get(&res_id)
            .ok_or(GpuError::InvalidResource(res_id))?;
        let rows = out.len() / row.max(1);
        if let (Some(obj), true) = (r.object(), rows > 0) {
            let span = (rows as u64 - 1) * stride + row as u64;
            let done =
                self.bm
                    .with_storage(obj, first, span, |storage, at| -> GpuResult<bool> {
                        let (Some(ptr), Ok(rel), Ok(span)) = (
                            storage.mapped(),
                            usize::try_from(at - storage.offset),
                            usize::try_from(span),
                        ) else {
                            return Ok(false);
                        };
                        // SAFETY: `with_storage` checked `first..first+span` lies in
                        // the object and keeps it in place while this runs.
                        let src = unsafe { crate::guest_io::mapped_slice(ptr.add(rel), span) };
                        for (i, line) in out.chunks_exact_mut(row).enumerate() {
                            src.subslice(i * stride as usize, row)
                                .map_err(|e| GpuError::InvalidParameter(e.to_string()))?
                                .copy_to(line);
                        }
                        Ok(true)
                    })??;
            if done {
                return Ok(());
            }
        }
        for (i, line) in out.chunks_exact_mut(row).enumerate() {
            self.read_resource(r, first + i as u64 * stride, line, mem)?;
        }
        Ok(())
    }

    /// Reads bytes of a resource's contents (host buffer, or a GUEST blob's pages).
    fn read_resource(
        &self,
        r: &Resource,
        offset: u64,
        buf: &mut [u8],
        mem: &GuestMem,
    ) -> GpuResult<()> {
        match r.object() {
            Some(obj) => self.bm.read(obj, offset, buf).map_err(GpuError::from),
            None => r
                .backing
                .as_ref()
                .ok_or_else(|| GpuError::InvalidParameter("blob without memory".into()))?
                .read(mem, offset, buf)
                .map_err(|e| GpuError::InvalidParameter(e.to_string())),
        }
    }

    fn update_cursor(&mut self, c: &UpdateCursor) -> GpuResult<Response> {
        let scanout = c.pos.scanout_id.get();
        if scanout as usize >= self.scanouts.len() {
            return Err(GpuError::InvalidScanout(scanout));
        }
        let (x, y) = (c.pos.x.get(), c.pos.y.get());
        let res_id = c.resource_id.get();
        if res_id == 0 {
            self.cursor_visible = false;
            if let Some(d) = self.display.as_mut() {
                let _ = d.cursor_move(scanout, x, y, false);
            }
            return Ok(Response::OkNoData);
        }
        let r = self
            .resources
            .get(&res_id)
            .ok_or(GpuError::InvalidResource(res_id))?;
        let (format, w, h) = r.image().ok_or_else(|| {
            GpuError::InvalidParameter(format!("cursor resource {res_id} is not an image"))
        })?;
        if (w, h) != (64, 64) {
            return Err(GpuError::InvalidParameter(format!(
                "cursor resource is {w}x{h}, not 64x64"
            )));
        }
        let mut image = Box::new([0u8; CURSOR_BYTES]);
        let obj = r.object().ok_or(GpuError::InvalidResource(res_id))?;
        self.bm.read(obj, 0, &mut image[..])?;
        to_bgrx_in_place(format, &mut image[..], true);
        self.cursor_visible = true;
        self.cursor_scanout = scanout;
        if let Some(d) = self.display.as_mut() {
            if let Err(e) = d.cursor_update(scanout, x, y, (c.hot_x.get(), c.hot_y.get()), &image) {
                log::warn!("display: cursor update failed: {e}");
            }
        }
        Ok(Response::OkNoData)
    }

    fn move_cursor(&mut self, c: &UpdateCursor) -> GpuResult<Response> {
        let scanout = c.pos.scanout_id.get();
        if scanout as usize >= self.scanouts.len() {
            return Err(GpuError::InvalidScanout(scanout));
        }
        self.cursor_scanout = scanout;
        if let Some(d) = self.display.as_mut() {
            if let Err(e) =
                d.cursor_move(scanout, c.pos.x.get(), c.pos.y.get(), self.cursor_visible)
            {
                log::warn!("display: cursor move failed: {e}");
            }
        }
        Ok(Response::OkNoData)
    }

    // ---- resources -----------------------------------------------------

    fn new_resource_id(&self, id: u32) -> GpuResult<()> {
        if id == 0 || self.resources.contains_key(&id) {
            return Err(GpuError::InvalidResource(id));
        }
        if self.resources.len() >= self.cfg.limits.max_resources {
            return Err(GpuError::OutOfMemory(format!(
                "{} resources is the per-VM limit",
                self.cfg.limits.max_resources
            )));
        }
        Ok(())
    }

    fn create_object(&self, size: u64) -> GpuResult<ObjectId> {
        Ok(self
            .bm
            .create(self.vm, size, Placement::system(), Priority::NORMAL)?)
    }

    fn create_2d(&mut self, c: &ResourceCreate2d) -> GpuResult<Response> {
        let id = c.resource_id.get();
        self.new_resource_id(id)?;
        let format = Format::from_u32(c.format.get())
            .ok_or_else(|| GpuError::InvalidParameter(format!("format {}", c.format.get())))?;
        let (width, height) = (c.width.get(), c.height.get());
        if width == 0 || height == 0 {
            return Err(GpuError::InvalidParameter(format!(
                "{width}x{height} image"
            )));
        }
        let size = image_size(width, height)?;
        let object = self.create_object(size)?;
        self.resources.insert(
            id,
            Resource::new(
                id,
                ResourceKind::Image {
                    format,
                    width,
                    height,
                    object,
                },
            ),
        );
        Ok(Response::OkNoData)
    }

    fn create_3d(&mut self, c: &ResourceCreate3d) -> GpuResult<Response> {
        let id = c.resource_id.get();
        self.new_resource_id(id)?;
        let (target, width, height) = (c.target.get(), c.width.get(), c.height.get());
        let simple = c.depth.get() <= 1
            && c.array_size.get() <= 1
            && c.last_level.get() == 0
            && c.nr_samples.get() <= 1;
        if !simple || width == 0 {
            return Err(GpuError::InvalidParameter(
                "only linear buffers and single-level 2D textures exist on this device".into(),
            ));
        }
        let kind = match target {
            PIPE_BUFFER => ResourceKind::Buffer {
                width,
                object: self.create_object(u64::from(width))?,
            },
            PIPE_TEXTURE_2D | PIPE_TEXTURE_RECT => {
                let format = Format::from_u32(c.format.get()).ok_or_else(|| {
                    GpuError::InvalidParameter(format!("format {}", c.format.get()))
                })?;
                if height == 0 {
                    return Err(GpuError::InvalidParameter("zero height".into()));
                }
                let size = image_size(width, height)?;
                ResourceKind::Image {
                    format,
                    width,
                    height,
                    object: self.create_object(size)?,
                }
            }
            t => return Err(GpuError::InvalidParameter(format!("texture target {t}"))),
        };
        let mut r = Resource::new(id, kind);
        let ctx = c.hdr.ctx_id.get();
        if self.contexts.contains_key(&ctx) {
            r.contexts.push(ctx);
        }
        self.resources.insert(id, r);
        Ok(Response::OkNoData)
    }

    fn unref(&mut self, id: u32) -> GpuResult<()> {
        if !self.resources.contains_key(&id) {
            return Err(GpuError::InvalidResource(id));
        }
        if self.resources.get(&id).is_some_and(|r| r.mapping.is_some()) {
            self.unmap_blob(id)?;
        }
        for i in 0..self.scanouts.len() {
            if shown_resource(self.scanouts[i].shown) == Some(id) {
                self.show(i, Shown::Nothing)?;
            }
        }
        let Some(r) = self.resources.remove(&id) else {
            return Err(GpuError::InvalidResource(id));
        };
        if let Some(b) = &r.backing {
            self.backing_entries -= b.entry_count();
        }
        if let Some(obj) = r.object().filter(|o| {
            !self
                .quarantine
                .iter()
                .any(|q| matches!(q, Quarantined::Object(x, _) if x == o))
        }) {
            let owner = self.bm.object_info(obj).ok().map(|i| i.owner);
            let _ = self.bm.destroy(obj);
            if let Some(owner) = owner.filter(|o| self.orphaned_accounts.contains(o)) {
                if self.bm.owner_stats(owner).is_ok_and(|s| s.objects == 0) {
                    let _ = self.bm.destroy_owner(owner);
                    self.orphaned_accounts.remove(&owner);
                }
            }
        }
        // A context's response blob going away leaves it without one.
        for ctx in self.contexts.values_mut() {
            if let Some(i915) = ctx.i915() {
                if i915.shmem.is_some_and(|s| s.res_id == id) {
                    i915.shmem = None;
                }
            }
        }
        Ok(())
    }

    fn attach_backing(
        &mut self,
        id: u32,
        entries: &[MemEntry],
        mem: &GuestMem,
    ) -> GpuResult<Response> {
        let r = self
            .resources
            .get(&id)
            .ok_or(GpuError::InvalidResource(id))?;
        if r.backing.is_some() {
            return Err(GpuError::Unspec(format!(
                "resource {id} already has backing"
            )));
        }
        if matches!(r.kind, ResourceKind::Blob { .. }) {
            return Err(GpuError::InvalidParameter(format!(
                "blob {id} takes its memory at creation"
            )));
        }
        if self.backing_entries + entries.len() > self.cfg.limits.max_backing_entries {
            return Err(GpuError::OutOfMemory("per-VM backing entry limit".into()));
        }
        let backing = GuestBacking::new(entries, mem)?;
        self.backing_entries += backing.entry_count();
        if let Some(r) = self.resources.get_mut(&id) {
            r.backing = Some(backing);
        }
        Ok(Response::OkNoData)
    }

    fn detach_backing(&mut self, id: u32) -> GpuResult<Response> {
        let r = self
            .resources
            .get_mut(&id)
            .ok_or(GpuError::InvalidResource(id))?;
        if r.is_blob() {
            return Err(GpuError::InvalidParameter(format!(
                "blob {id} keeps its memory"
            )));
        }
        let b = r
            .backing
            .take()
            .ok_or_else(|| GpuError::Unspec(format!("resource {id} has no backing")))?;
        self.backing_entries -= b.entry_count();
        Ok(Response::OkNoData)
    }

    fn transfer_to_host_2d(&mut self, c: &TransferToHost2d, mem: &GuestMem) -> GpuResult<Response> {
        let id = c.resource_id.get();
        let r = self
            .resources
            .get(&id)
            .ok_or(GpuError::InvalidResource(id))?;
        let (_, width, height) = r
            .image()
            .ok_or_else(|| GpuError::InvalidParameter(format!("resource {id} is not an image")))?;
        let backing = r
            .backing
            .as_ref()
            .ok_or_else(|| GpuError::InvalidParameter(format!("resource {id} has no backing")))?;
        let rows = transfer_rows(&c.r, c.offset.get(), width, height, backing.len())?;
        let Some(obj) = r.object() else {
            return Err(GpuError::InvalidResource(id));
        };
        copy_rows(&self.bm, obj, backing, mem, &rows, true)?;
        Ok(Response::OkNoData)
    }

    fn transfer_3d(
        &mut self,
        c: &TransferHost3d,
        mem: &GuestMem,
        to_host: bool,
    ) -> GpuResult<Response> {
        let id = c.resource_id.get();
        let r = self
            .resources
            .get(&id)
            .ok_or(GpuError::InvalidResource(id))?;
        let backing = r
            .backing
            .as_ref()
            .ok_or_else(|| GpuError::InvalidParameter(format!("resource {id} has no backing")))?;
        let obj = r.object().ok_or_else(|| {
            GpuError::InvalidParameter(format!("resource {id} has no host storage"))
        })?;
        let b = &c.box_;
        if c.level.get() != 0 || b.z.get() != 0 || b.d.get() > 1 {
            return Err(GpuError::InvalidParameter("only level 0, one layer".into()));
        }
        let rows = match r.kind {
            ResourceKind::Image { width, height, .. } => {
                // The guest's stride may exceed the image's.
                let rect = Rect::new(b.x.get(), b.y.get(), b.w.get(), b.h.get());
                check_rect(&rect, width, height, true)?;
                let stride = match u64::from(c.stride.get()) {
                    0 => u64::from(width) * BPP,
                    s => s,
                };
                let row = u64::from(b.w.get()) * BPP;
                if stride < row {
                    return Err(GpuError::InvalidParameter(format!(
                        "stride {stride} < row {row}"
                    )));
                }
                let h = u64::from(b.h.get());
                let end = h
                    .checked_sub(1)
                    .map_or(Some(0), |rows| {
                        rows.checked_mul(stride)?
                            .checked_add(row)?
                            .checked_add(c.offset.get())
                    })
                    .ok_or(BoundsError::Overflow { what: "transfer" })?;
                if h > 0 && end > backing.len() {
                    return Err(BoundsError::PastBacking {
                        offset: c.offset.get(),
                        end,
                        len: backing.len(),
                    }
                    .into());
                }
                (0..h)
                    .map(|i| RowCopy {
                        src: c.offset.get() + i * stride,
                        dst: (u64::from(b.y.get()) + i) * u64::from(width) * BPP
                            + u64::from(b.x.get()) * BPP,
                        len: row,
                    })
                    .collect()
            }
            ResourceKind::Buffer { width, .. } => {
                linear_copy(b, c.offset.get(), u64::from(width), backing.len())?
            }
            ResourceKind::Blob { size, .. } => linear_copy(b, c.offset.get(), size, backing.len())?,
        };
        copy_rows(&self.bm, obj, backing, mem, &rows, to_host)?;
        Ok(Response::OkNoData)
    }

    fn assign_uuid(&mut self, id: u32) -> GpuResult<Response> {
        let r = self
            .resources
            .get_mut(&id)
            .ok_or(GpuError::InvalidResource(id))?;
        let uuid = match r.uuid {
            Some(u) => u,
            None => {
                let mut u = [0u8; 16];
                rustix::rand::getrandom(&mut u, rustix::rand::GetRandomFlags::empty())
                    .map_err(|e| GpuError::Unspec(format!("getrandom: {e}")))?;
                u[6] = (u[6] & 0x0f) | 0x40; // version 4
                u[8] = (u[8] & 0x3f) | 0x80; // RFC 4122 variant
                r.uuid = Some(u);
                u
            }
        };
        Ok(Response::ResourceUuid(uuid))
    }

    fn capset_info(&self, index: u32) -> GpuResult<Response> {
        if index >= self.num_capsets() {
            return Err(GpuError::InvalidParameter(format!("capset index {index}")));
        }
        Ok(Response::CapsetInfo {
            capset_id: VIRTIO_GPU_CAPSET_DRM,
            max_version: 0,
            max_size: size_of::<vgpu_proto::native::CapsetDrmI915>() as u32,
        })
    }

    fn capset(&self, id: u32, version: u32) -> GpuResult<Response> {
        if id != VIRTIO_GPU_CAPSET_DRM || version != 0 || self.num_capsets() == 0 {
            return Err(GpuError::InvalidParameter(format!(
                "capset {id} version {version}"
            )));
        }
        Ok(Response::Capset(
            I915Context::capset(&self.cfg).as_bytes().to_vec(),
        ))
    }

    // ---- blobs ---------------------------------------------------------

    fn create_blob(
        &mut self,
        c: &ResourceCreateBlob,
        entries: &[MemEntry],
        mem: &GuestMem,
    ) -> GpuResult<Response> {
        let id = c.resource_id.get();
        self.new_resource_id(id)?;
        let blob_mem = BlobMem::from_u32(c.blob_mem.get())
            .ok_or_else(|| GpuError::InvalidParameter(format!("blob_mem {}", c.blob_mem.get())))?;
        let flags = c.blob_flags.get();
        if flags & !VIRTIO_GPU_BLOB_FLAGS_ALL != 0 {
            return Err(GpuError::InvalidParameter(format!("blob flags {flags:#x}")));
        }
        let size = c.size.get();
        if size == 0 || size > vgpu_backend::MAX_OBJECT_SIZE {
            return Err(GpuError::InvalidParameter(format!("blob size {size}")));
        }
        let ctx_id = c.hdr.ctx_id.get();
        let blob_id = c.blob_id.get();
        let backing = match blob_mem {
            BlobMem::Host3d if !entries.is_empty() => {
                return Err(GpuError::InvalidParameter(
                    "HOST3D blobs take no mem entries".into(),
                ))
            }
            BlobMem::Host3d => None,
            BlobMem::Guest | BlobMem::Host3dGuest => {
                if self.backing_entries + entries.len() > self.cfg.limits.max_backing_entries {
                    return Err(GpuError::OutOfMemory("per-VM backing entry limit".into()));
                }
                let b = GuestBacking::new(entries, mem)?;
                if b.len() != size {
                    return Err(GpuError::InvalidParameter(format!(
                        "blob of {size} bytes with {} bytes of mem entries",
                        b.len()
                    )));
                }
                Some(b)
            }
        };
        let (object, ctx, map_caching) = match blob_mem {
            BlobMem::Guest => (None, None, None),
            BlobMem::Host3d | BlobMem::Host3dGuest => {
                let (object, caching) = self.take_context_object(ctx_id, blob_id, size, id)?;
                (Some(object), Some(ctx_id), caching)
            }
        };
        let mut r = Resource::new(
            id,
            ResourceKind::Blob {
                mem: blob_mem,
                flags,
                size,
                object,
                ctx,
            },
        );
        r.map_caching = map_caching;
        if let Some(b) = backing {
            self.backing_entries += b.entry_count();
            r.backing = Some(b);
        }
        if let Some(ctx) = ctx {
            r.contexts.push(ctx);
        }
        self.resources.insert(id, r);
        Ok(Response::OkNoData)
    }

    /// The context object a HOST3D blob names: the response blob (blob_id
    /// 0) or a GEM object, whose size must match; with the mapping caching
    /// the context configured for it.
    fn take_context_object(
        &mut self,
        ctx_id: u32,
        blob_id: u64,
        size: u64,
        res_id: u32,
    ) -> GpuResult<(ObjectId, Option<MapCaching>)> {
        let bm = self.bm.clone();
        let ctx = self
            .contexts
            .get_mut(&ctx_id)
            .ok_or(GpuError::InvalidContext(ctx_id))?;
        let owner = ctx.owner;
        let i915 = ctx.i915().ok_or_else(|| {
            GpuError::InvalidParameter(format!("context {ctx_id} has no host objects"))
        })?;
        if blob_id == 0 {
            if i915.shmem.is_some() {
                return Err(GpuError::InvalidParameter(
                    "the context already has a response blob".into(),
                ));
            }
            if !(16..=crate::context::i915::MAX_SHMEM_SIZE).contains(&size) {
                return Err(GpuError::InvalidParameter(format!(
                    "response blob of {size} bytes"
                )));
            }
            let object = bm.create(owner, size, Placement::system(), Priority::HIGHEST)?;
            let installed = bm.pin(object, PinReason::Host).and_then(|_| {
                i915.install_shmem(
                    &bm,
                    crate::context::i915::Shmem {
                        res_id,
                        object,
                        size,
                    },
                )
            });
            if let Err(e) = installed {
                let _ = bm.destroy(object);
                return Err(e.into());
            }
            return Ok((object, None));
        }
        let key = u32::try_from(blob_id)
            .map_err(|_| GpuError::InvalidParameter(format!("blob_id {blob_id}")))?;
        let pending = *i915.blobs.get(&key).ok_or_else(|| {
            GpuError::InvalidParameter(format!("context {ctx_id} has no object {blob_id}"))
        })?;
        let actual = bm.size(pending.object)?;
        if actual != size {
            return Err(GpuError::InvalidParameter(format!(
                "blob {blob_id} is {actual} bytes, not {size}"
            )));
        }
        i915.blobs.remove(&key);
        Ok((pending.object, pending.map_caching))
    }

    /// RESOURCE_MAP_BLOB. The virtio spec defines it for *host-only* blob
    /// resources (VIRTIO_GPU_BLOB_MEM_HOST3D) with USE_MAPPABLE: the
    /// guest's own pages (GUEST, HOST3D_GUEST) are already the guest's, and
    /// the Linux driver never maps them. So exactly one SHMEM_MAP per
    /// mapping, undone by exactly one SHMEM_UNMAP of the same range.
    fn map_blob(&mut self, id: u32, offset: u64) -> GpuResult<Response> {
        let r = self
            .resources
            .get(&id)
            .ok_or(GpuError::InvalidResource(id))?;
        let ResourceKind::Blob {
            mem,
            flags,
            size,
            object,
            ..
        } = r.kind
        else {
            return Err(GpuError::InvalidParameter(format!(
                "resource {id} is not a blob"
            )));
        };
        let (Some(object), BlobMem::Host3d) = (object, mem) else {
            return Err(GpuError::InvalidParameter(format!(
                "blob {id} is not a host-only (HOST3D) blob: only those can be mapped"
            )));
        };
        if flags & VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE == 0 {
            return Err(GpuError::InvalidParameter(format!(
                "blob {id} is not mappable"
            )));
        }
        if r.mapping.is_some() {
            return Err(GpuError::InvalidParameter(format!(
                "blob {id} is already mapped"
            )));
        }
        let r_caching = r.map_caching;
        let mapper = self.mapper.clone().ok_or_else(|| {
            GpuError::Unspec("the frontend offers no host-visible region (SHMEM)".into())
        })?;
        let len = self.hostmem.reserve(offset, size)?;
        let caching = match self.map_object(object, offset, len, mapper.as_ref()) {
            Ok(c) => c,
            Err(e) => {
                self.hostmem.release(offset);
                return Err(e);
            }
        };
        // The caching the guest configured (i915 SET_MMAP_MODE), else the
        // memory's own, as virglrenderer reports it.
        let caching = r_caching.unwrap_or_else(|| MapCaching::from(caching));
        if let Some(r) = self.resources.get_mut(&id) {
            r.mapping = Some(Mapping {
                offset,
                len,
                backed: MapBacking::Object,
                caching,
            });
        }
        Ok(Response::MapInfo(caching.map_info()))
    }

    fn map_object(
        &self,
        obj: ObjectId,
        offset: u64,
        len: u64,
        mapper: &dyn HostMemMapper,
    ) -> GpuResult<vgpu_backend::region::Caching> {
        let target = self.bm.pin(obj, PinReason::Mapped)?;
        use std::os::fd::AsFd;
        if let Err(e) = mapper.map(offset, target.fd.as_fd(), target.offset, len) {
            let _ = self.bm.unpin(obj, PinReason::Mapped);
            return Err(GpuError::Unspec(format!("SHMEM_MAP failed: {e}")));
        }
        Ok(target.caching)
    }

    fn unmap_blob(&mut self, id: u32) -> GpuResult<()> {
        let r = self
            .resources
            .get_mut(&id)
            .ok_or(GpuError::InvalidResource(id))?;
        if !r.is_blob() {
            return Err(GpuError::InvalidParameter(format!(
                "resource {id} is not a blob"
            )));
        }
        let m = r
            .mapping
            .take()
            .ok_or_else(|| GpuError::InvalidParameter(format!("blob {id} is not mapped")))?;
        let obj = r.object();
        if let Some(mapper) = &self.mapper {
            let unmapped = match m.backed {
                MapBacking::Nothing => Ok(()),
                _ => mapper.unmap(m.offset, m.len),
            };
            if let Err(e) = unmapped {
                log::warn!(
                    "SHMEM_UNMAP of blob {id} failed: {e}; its pages stay reserved until the VMM disconnects"
                );
                match (m.backed, obj) {
                    // Pinned, and kept out of `unref`'s reach.
                    (MapBacking::Object, Some(obj)) => {
                        self.quarantine.push(Quarantined::Object(obj, m.offset))
                    }
                    (MapBacking::Scratch, _) => {
                        self.quarantine.push(Quarantined::Scratch(m.offset, m.len))
                    }
                    // Guest pages (a GUEST blob): nothing of the host's to keep.
                    _ => self.hostmem.release(m.offset),
                }
                return Ok(());
            }
        }
        self.hostmem.release(m.offset);
        match (m.backed, obj) {
            (MapBacking::Object, Some(obj)) => {
                let _ = self.bm.unpin(obj, PinReason::Mapped);
            }
            (MapBacking::Scratch, _) => {
                let _ = self.bm.scratch_unmap(self.vm, m.len);
            }
            _ => {}
        }
        Ok(())
    }

    /// The buffer manager purged blobs the guest still maps: remap each
    /// such range over the VM's scratch file (SHMEM_UNMAP of the purged
    /// buffer, SHMEM_MAP of the scratch file, then drop the mapping pin,
    /// which releases the purged buffer's file). What the guest writes
    /// there afterwards lands in one file charged to the VM and emptied by
    /// every shrink. The device's event loop calls this when the purge
    /// eventfd fires.
    pub fn remap_purged(&mut self) {
        let Some(watch) = &self.purge_watch else {
            return;
        };
        let purged = watch.drain();
        if purged.is_empty() {
            return;
        }
        let Some(mapper) = self.mapper.clone() else {
            return;
        };
        for r in self.resources.values_mut() {
            let Some(obj) = r.object().filter(|o| purged.contains(o)) else {
                continue;
            };
            let Some(m) = r
                .mapping
                .as_mut()
                .filter(|m| m.backed == MapBacking::Object)
            else {
                continue;
            };
            if let Err(e) = mapper.unmap(m.offset, m.len) {
                // The VMM still maps the purged file: it stays in limbo
                // (charged, punched at every shrink) until the guest unmaps.
                log::warn!(
                    "SHMEM_UNMAP of purged blob {} failed: {e}; it stays mapped",
                    r.id
                );
                continue;
            }
            let scratch = self
                .bm
                .scratch_map(self.vm, m.len)
                .map_err(|e| e.to_string());
            let remapped = scratch.and_then(|t| {
                use std::os::fd::AsFd;
                mapper
                    .map(m.offset, t.fd.as_fd(), t.offset, m.len)
                    .map_err(|e| {
                        let _ = self.bm.scratch_unmap(self.vm, m.len);
                        e.to_string()
                    })
            });
            m.backed = match remapped {
                Ok(()) => MapBacking::Scratch,
                Err(e) => {
                    log::warn!(
                        "mapping scratch memory over purged blob {} failed: {e}; the range stays unmapped",
                        r.id
                    );
                    MapBacking::Nothing
                }
            };
            log::debug!("purged blob {} remapped over the scratch file", r.id);
            let _ = self.bm.unpin(obj, PinReason::Mapped);
        }
    }

    /// The eventfd that says [`Self::remap_purged`] has work.
    pub fn purge_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.purge_watch.as_ref().map(|w| w.fd())
    }

    // ---- contexts ------------------------------------------------------

    fn create_context(&mut self, c: &CtxCreate) -> GpuResult<Response> {
        let id = c.hdr.ctx_id.get();
        if id == 0 || self.contexts.contains_key(&id) {
            return Err(GpuError::InvalidContext(id));
        }
        if self.contexts.len() >= self.cfg.limits.max_contexts {
            return Err(GpuError::OutOfMemory(format!(
                "{} contexts is the per-VM limit",
                self.cfg.limits.max_contexts
            )));
        }
        let kind = match c.capset_id() {
            0 => ContextKind::Plain,
            VIRTIO_GPU_CAPSET_DRM if self.num_capsets() > 0 => {
                ContextKind::I915(Box::new(I915Context::new()))
            }
            other => {
                return Err(GpuError::InvalidParameter(format!(
                    "capset {other} is not offered"
                )))
            }
        };
        let name = String::from_utf8_lossy(c.debug_name()).into_owned();
        let owner = self
            .bm
            .create_owner(&format!("ctx{id}:{name}"), Some(self.vm))
            .map_err(GpuError::from)?;
        self.contexts.insert(
            id,
            Context {
                id,
                name,
                owner,
                kind,
            },
        );
        Ok(Response::OkNoData)
    }

    fn destroy_context(&mut self, id: u32) -> GpuResult<()> {
        let mut ctx = self
            .contexts
            .remove(&id)
            .ok_or(GpuError::InvalidContext(id))?;
        if let Some(i915) = ctx.i915() {
            i915.release(&self.bm);
        }
        for r in self.resources.values_mut() {
            r.contexts.retain(|c| *c != id);
        }
        // Resources made from the context's objects outlive it; its
        // account goes with the last of them (see `unref`).
        if self.bm.owner_stats(ctx.owner).is_ok_and(|s| s.objects == 0) {
            let _ = self.bm.destroy_owner(ctx.owner);
        } else {
            self.orphaned_accounts.insert(ctx.owner);
        }
        Ok(())
    }

    fn ctx_attach(&mut self, ctx_id: u32, res_id: u32, attach: bool) -> GpuResult<Response> {
        if !self.contexts.contains_key(&ctx_id) {
            return Err(GpuError::InvalidContext(ctx_id));
        }
        let r = self
            .resources
            .get_mut(&res_id)
            .ok_or(GpuError::InvalidResource(res_id))?;
        let present = r.contexts.contains(&ctx_id);
        if attach && !present {
            r.contexts.push(ctx_id);
        } else if !attach {
            r.contexts.retain(|c| *c != ctx_id);
        }
        Ok(Response::OkNoData)
    }

    fn submit_3d(&mut self, ctx_id: u32, data: &[u8]) -> Outcome {
        let Some(ctx) = self.contexts.get_mut(&ctx_id) else {
            return Outcome::from(Err(GpuError::InvalidContext(ctx_id)));
        };
        let owner = ctx.owner;
        let ContextKind::I915(i915) = &mut ctx.kind else {
            return Outcome::from(Err(GpuError::InvalidParameter(format!(
                "context {ctx_id} runs no command stream"
            ))));
        };
        let mut env = NativeEnv {
            bm: &self.bm,
            resources: &mut self.resources,
            engine: &mut self.engine,
            cfg: &self.cfg,
            ctx_id,
            owner,
        };
        let outcome = i915.submit(data, &mut env);
        Outcome {
            response: match outcome.error {
                None => Response::OkNoData,
                Some(_) => Response::Error(ErrorCode::InvalidParameter),
            },
            fence: outcome.fence,
        }
    }
}

/// Bytes of a `width`×`height` image; too large to ever allocate is out of memory.
fn image_size(width: u32, height: u32) -> GpuResult<u64> {
    u64::from(width)
        .checked_mul(u64::from(height))
        .and_then(|p| p.checked_mul(BPP))
        .filter(|s| *s <= vgpu_backend::MAX_OBJECT_SIZE)
        .ok_or_else(|| GpuError::OutOfMemory(format!("a {width}x{height} image is too large")))
}

fn shown_resource(s: Shown) -> Option<u32> {
    match s {
        Shown::Nothing => None,
        Shown::Image { resource, .. } | Shown::Blob { resource, .. } => Some(resource),
    }
}

/// A linear (buffer or blob) transfer of `box.w` bytes at `box.x`.
fn linear_copy(b: &Box3d, offset: u64, size: u64, backing_len: u64) -> GpuResult<Vec<RowCopy>> {
    let (x, w) = (u64::from(b.x.get()), u64::from(b.w.get()));
    if b.y.get() != 0 || b.h.get() > 1 || x + w > size {
        return Err(GpuError::InvalidParameter(format!(
            "box {x}+{w} outside a {size}-byte buffer"
        )));
    }
    let end = offset
        .checked_add(w)
        .ok_or(BoundsError::Overflow { what: "transfer" })?;
    if end > backing_len {
        return Err(BoundsError::PastBacking {
            offset,
            end,
            len: backing_len,
        }
        .into());
    }
    Ok(if w == 0 {
        Vec::new()
    } else {
        vec![RowCopy {
            src: offset,
            dst: x,
            len: w,
        }]
    })
}

/// Copies rows between guest backing and a host buffer, straight through
/// the buffer's file.
fn copy_rows(
    bm: &BufferManager,
    obj: ObjectId,
    backing: &GuestBacking,
    mem: &GuestMem,
    rows: &[RowCopy],
    to_host: bool,
) -> GpuResult<()> {
    let rows = coalesce(rows);
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(());
    };
    let span = last.dst + last.len - first.dst;
    let copy = |storage: &vgpu_backend::region::Storage<'_>, base: u64| -> GpuResult<()> {
        let bad = |e: crate::guest_io::CopyError| GpuError::InvalidParameter(e.to_string());
        let mapped = storage
            .mapped()
            .zip(usize::try_from(span).ok())
            .zip(usize::try_from(base - storage.offset).ok());
        if let Some(((ptr, span), rel)) = mapped {
            // SAFETY: `with_storage` checked `first.dst..+span` lies in the
            // object and keeps it in place (locked) while this runs; `rel`
            // is that range's start within the object's mapping.
            let host = unsafe { crate::guest_io::mapped_slice(ptr.add(rel), span) };
            for row in &rows {
                let at = (row.dst - first.dst) as usize;
                let part = host
                    .subslice(at, row.len as usize)
                    .map_err(|e| GpuError::InvalidParameter(e.to_string()))?;
                if to_host {
                    backing
                        .copy_to_mapped(mem, row.src, row.len, &part)
                        .map_err(bad)?;
                } else {
                    backing
                        .copy_from_mapped(mem, row.src, row.len, &part)
                        .map_err(bad)?;
                }
            }
            return Ok(());
        }
        let fd = storage.file.fd();
        for row in &rows {
            let at = base + (row.dst - first.dst);
            let r = if to_host {
                backing.copy_to_file(mem, row.src, row.len, fd, at)
            } else {
                backing.copy_from_file(mem, row.src, row.len, fd, at)
            };
            r.map_err(bad)?;
        }
        Ok(())
    };
    // One run written to the host covers its range completely: a buffer
    // reused from another object need not be zeroed there first.
    if to_host && rows.len() == 1 {
        bm.with_storage_overwrite(obj, first.dst, span, copy)?
    } else {
        bm.with_storage(obj, first.dst, span, copy)?
    }
}

/// Merges rows that continue each other on both sides (a full-width
/// rectangle becomes one copy).
fn coalesce(rows: &[RowCopy]) -> Vec<RowCopy> {
    let mut out: Vec<RowCopy> = Vec::with_capacity(rows.len().min(16));
    for r in rows {
        match out.last_mut() {
            Some(prev) if prev.src + prev.len == r.src && prev.dst + prev.len == r.dst => {
                prev.len += r.len;
            }
            _ => out.push(*r),
        }
    }
    out
}
