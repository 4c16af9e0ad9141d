//! Transfers between guest backing and host buffers (2D and 3D), and the
//! row copies they and display updates are made of.

use super::*;

impl VirtioGpu {
    pub(super) fn transfer_to_host_2d(
        &mut self,
        c: &TransferToHost2d,
        mem: &GuestMem,
    ) -> GpuResult<Response> {
        let id = ResourceId(c.resource_id.get());
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
        let rows = transfer_rows(&c.r, c.offset.get(), width, height, 0, backing.len())?;
        let Some(obj) = r.object() else {
            return Err(GpuError::InvalidResource(id));
        };
        copy_rows(&self.bm, obj, backing, mem, &rows, Direction::ToHost)?;
        Ok(Response::OkNoData)
    }

    pub(super) fn transfer_to_host_3d(
        &mut self,
        c: &TransferHost3d,
        mem: &GuestMem,
    ) -> GpuResult<Response> {
        self.transfer_3d(c, mem, Direction::ToHost)
    }

    pub(super) fn transfer_from_host_3d(
        &mut self,
        c: &TransferHost3d,
        mem: &GuestMem,
    ) -> GpuResult<Response> {
        self.transfer_3d(c, mem, Direction::FromHost)
    }

    fn transfer_3d(
        &mut self,
        c: &TransferHost3d,
        mem: &GuestMem,
        direction: Direction,
    ) -> GpuResult<Response> {
        let id = ResourceId(c.resource_id.get());
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
                let rect = Rect::new(b.x.get(), b.y.get(), b.w.get(), b.h.get());
                let stride = u64::from(c.stride.get());
                transfer_rows(&rect, c.offset.get(), width, height, stride, backing.len())?
            }
            ResourceKind::Buffer { width, .. } => {
                linear_copy(b, c.offset.get(), u64::from(width), backing.len())?
            }
            ResourceKind::Blob { size, .. } => linear_copy(b, c.offset.get(), size, backing.len())?,
        };
        copy_rows(&self.bm, obj, backing, mem, &rows, direction)?;
        Ok(Response::OkNoData)
    }

    /// Reads `out.len() / at.row` rows of `at.row` bytes, `at.stride`
    /// apart, from offset `at.first` of a resource, and hands each row to `each_row`
    /// while it is still in cache: from the buffer's mapping in one go
    /// when it has one, else row by row.
    pub(super) fn read_rows(
        &self,
        res_id: ResourceId,
        at: RowsAt,
        out: &mut [u8],
        each_row: impl Fn(&mut [u8]),
        mem: &GuestMem,
    ) -> GpuResult<()> {
        let r = self
            .resources
            .get(&res_id)
            .ok_or(GpuError::InvalidResource(res_id))?;
        let RowsAt { first, stride, row } = at;
        let rows = out.len() / row.max(1);
        if let (Some(obj), true) = (r.object(), rows > 0) {
            let span = (rows as u64 - 1) * stride + row as u64;
            let done =
                self.bm
                    .with_storage(obj, first, span, |storage, at| -> GpuResult<bool> {
                        let view = usize::try_from(span)
                            .ok()
                            .and_then(|span| storage.slice(at - storage.offset, span));
                        let Some(src) = view else {
                            return Ok(false);
                        };
                        for (i, line) in out.chunks_exact_mut(row).enumerate() {
                            src.subslice(i * stride as usize, row)
                                .map_err(GpuError::from)?
                                .copy_to(line);
                            each_row(line);
                        }
                        Ok(true)
                    })??;
            if done {
                return Ok(());
            }
        }
        for (i, line) in out.chunks_exact_mut(row).enumerate() {
            self.read_resource(r, first + i as u64 * stride, line, mem)?;
            each_row(line);
        }
        Ok(())
    }

    pub(super) fn read_resource(
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
                .map_err(GpuError::from),
        }
    }
}

/// Where rows are read from: the first at byte `first` of a resource,
/// `row` bytes each, `stride` bytes apart.
#[derive(Debug, Clone, Copy)]
pub(super) struct RowsAt {
    pub(super) first: u64,
    pub(super) stride: u64,
    pub(super) row: usize,
}

/// A linear (buffer or blob) transfer of `box.w` bytes at `box.x`.
pub(super) fn linear_copy(
    b: &Box3d,
    offset: u64,
    size: u64,
    backing_len: u64,
) -> GpuResult<Vec<RowCopy>> {
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
pub(super) fn copy_rows(
    bm: &BufferManager,
    obj: ObjectId,
    backing: &GuestBacking,
    mem: &GuestMem,
    rows: &[RowCopy],
    direction: Direction,
) -> GpuResult<()> {
    let rows = coalesce(rows);
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(());
    };
    let span = last.dst + last.len - first.dst;
    let copy = |storage: &vgpu_backend::region::Storage<'_>, base: u64| -> GpuResult<()> {
        let view = usize::try_from(span)
            .ok()
            .and_then(|span| storage.slice(base - storage.offset, span));
        if let Some(host) = view {
            for row in &rows {
                let at = (row.dst - first.dst) as usize;
                let part = host
                    .subslice(at, row.len as usize)
                    .map_err(GpuError::from)?;
                if direction == Direction::ToHost {
                    backing.copy_to_mapped(mem, row.src, row.len, &part)?;
                } else {
                    backing.copy_from_mapped(mem, row.src, row.len, &part)?;
                }
            }
            return Ok(());
        }
        let fd = storage.file.fd();
        for row in &rows {
            let at = base + (row.dst - first.dst);
            let r = if direction == Direction::ToHost {
                backing.copy_to_file(mem, row.src, row.len, fd, at)
            } else {
                backing.copy_from_file(mem, row.src, row.len, fd, at)
            };
            r?;
        }
        Ok(())
    };
    // One run written to the host covers its range completely: a buffer
    // reused from another object need not be zeroed there first.
    if direction == Direction::ToHost && rows.len() == 1 {
        bm.with_storage_overwrite(obj, first.dst, span, copy)?
    } else {
        bm.with_storage(obj, first.dst, span, copy)?
    }
}

/// Merges rows that continue each other on both sides (a full-width
/// rectangle becomes one copy).
pub(super) fn coalesce(rows: &[RowCopy]) -> Vec<RowCopy> {
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
