//! Blobs: creation from guest pages or a context's objects, mapping into
//! the host-visible region (SHMEM_MAP), the quarantine of mappings the VMM
//! failed to undo, and the remapping of purged mapped blobs.

use super::*;

/// A mapping the VMM failed to unmap.
#[derive(Debug, Clone, Copy)]
pub(super) enum Quarantined {
    /// A pinned object at a host-visible offset.
    Object(ObjectId, u64),
    /// A scratch range (offset, length).
    Scratch(u64, u64),
}

impl VirtioGpu {
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

    pub(super) fn resource_create_blob(
        &mut self,
        c: &ResourceCreateBlob,
        entries: &[MemEntry],
        mem: &GuestMem,
    ) -> GpuResult<Response> {
        let id = ResourceId(c.resource_id.get());
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
        let ctx_id = ContextId(c.hdr.ctx_id.get());
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

    /// The context object a HOST3D blob names, as the context's backend
    /// hands it over, with the mapping caching it configured.
    pub(super) fn take_context_object(
        &mut self,
        ctx_id: ContextId,
        blob_id: u64,
        size: u64,
        res_id: ResourceId,
    ) -> GpuResult<(ObjectId, Option<MapCaching>)> {
        let ctx = self
            .contexts
            .get_mut(&ctx_id)
            .ok_or(GpuError::InvalidContext(ctx_id))?;
        let owner = ctx.owner;
        let backend = ctx.backend.as_mut().ok_or_else(|| {
            GpuError::InvalidParameter(format!("context {ctx_id} has no host objects"))
        })?;
        let blob = backend.create_blob(&self.bm, owner, blob_id, size, res_id)?;
        Ok((blob.object, blob.map_caching))
    }

    /// RESOURCE_MAP_BLOB. The virtio spec defines it for *host-only* blob
    /// resources (VIRTIO_GPU_BLOB_MEM_HOST3D) with USE_MAPPABLE: the
    /// guest's own pages (GUEST, HOST3D_GUEST) are already the guest's, and
    /// the Linux driver never maps them. So exactly one SHMEM_MAP per
    /// mapping, undone by exactly one SHMEM_UNMAP of the same range.
    pub(super) fn resource_map_blob(&mut self, id: ResourceId, offset: u64) -> GpuResult<Response> {
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
        let mapper = self.mapper.clone().ok_or(GpuError::NoHostMem)?;
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

    pub(super) fn map_object(
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
            return Err(GpuError::Map(e));
        }
        Ok(target.caching)
    }

    pub(super) fn resource_unmap_blob(&mut self, id: ResourceId) -> GpuResult<()> {
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
}
