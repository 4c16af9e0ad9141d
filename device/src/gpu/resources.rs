//! Resources: 2D images and 3D buffers, their guest backing, UUIDs, and
//! their teardown.

use super::*;

impl VirtioGpu {
    pub(super) fn new_resource_id(&self, id: ResourceId) -> GpuResult<()> {
        if id.is_zero() || self.resources.contains_key(&id) {
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

    pub(super) fn create_object(&self, size: u64) -> GpuResult<ObjectId> {
        Ok(self
            .bm
            .create(self.vm, size, Placement::system(), Priority::NORMAL)?)
    }

    pub(super) fn resource_create_2d(&mut self, c: &ResourceCreate2d) -> GpuResult<Response> {
        let id = ResourceId(c.resource_id.get());
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

    pub(super) fn resource_create_3d(&mut self, c: &ResourceCreate3d) -> GpuResult<Response> {
        let id = ResourceId(c.resource_id.get());
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
        let ctx = ContextId(c.hdr.ctx_id.get());
        if self.contexts.contains_key(&ctx) {
            r.contexts.push(ctx);
        }
        self.resources.insert(id, r);
        Ok(Response::OkNoData)
    }

    pub(super) fn resource_unref(&mut self, id: ResourceId) -> GpuResult<()> {
        if !self.resources.contains_key(&id) {
            return Err(GpuError::InvalidResource(id));
        }
        if self.resources.get(&id).is_some_and(|r| r.mapping.is_some()) {
            self.resource_unmap_blob(id)?;
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
        // Contexts that use it (e.g. as their response blob) forget it.
        for backend in self
            .contexts
            .values_mut()
            .filter_map(|c| c.backend.as_mut())
        {
            backend.resource_gone(id);
        }
        Ok(())
    }

    pub(super) fn resource_attach_backing(
        &mut self,
        id: ResourceId,
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

    pub(super) fn resource_detach_backing(&mut self, id: ResourceId) -> GpuResult<Response> {
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

    pub(super) fn resource_assign_uuid(&mut self, id: ResourceId) -> GpuResult<Response> {
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
}

/// Bytes of a `width`×`height` image; too large to ever allocate is out of memory.
pub(super) fn image_size(width: u32, height: u32) -> GpuResult<u64> {
    u64::from(width)
        .checked_mul(u64::from(height))
        .and_then(|p| p.checked_mul(BPP))
        .filter(|s| *s <= vgpu_backend::MAX_OBJECT_SIZE)
        .ok_or_else(|| GpuError::OutOfMemory(format!("a {width}x{height} image is too large")))
}
