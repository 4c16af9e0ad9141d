//! Scanouts and the cursor: display info, EDID, what each scanout shows
//! (2D images and blobs), flushes to the display channel and the
//! screenshot store.

use super::*;

/// The largest scanout rectangle a guest may show, per side (the Linux
/// virtio-gpu driver's XRES_MAX / YRES_MAX).
pub const MAX_SCANOUT_SIDE: u32 = 8192;
/// Display updates go out in bands of whole rows of at most this many
/// bytes (a 2560×1440 frame is one band), so a flush never needs more
/// memory than this, however large the shown rectangle.
pub const UPDATE_BAND_BYTES: usize = 16 << 20;

/// Refuses scanout rectangles larger than any display vgpu drives.
pub(super) fn check_scanout_side(r: &Rect) -> GpuResult<()> {
    let (w, h) = (r.width.get(), r.height.get());
    if w > MAX_SCANOUT_SIDE || h > MAX_SCANOUT_SIDE {
        return Err(GpuError::InvalidParameter(format!(
            "scanout rectangle {w}x{h} is larger than {MAX_SCANOUT_SIDE}x{MAX_SCANOUT_SIDE}"
        )));
    }
    Ok(())
}

/// What a scanout shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Shown {
    #[default]
    Nothing,
    /// A 2D image resource: this area of it.
    Image { resource: ResourceId, rect: Area },
    /// A blob, read with this layout.
    Blob {
        resource: ResourceId,
        rect: Area,
        format: Format,
        stride: u32,
        offset: u32,
    },
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Scanout {
    pub(super) mode: Mode,
    pub(super) shown: Shown,
    /// Size last announced to the display (0×0: disabled).
    pub(super) announced: (u32, u32),
    /// Whether the display channel's image of this scanout equals the
    /// frame kept in `screens` (then updates carry only what changed):
    /// false from a new size or a new channel until an update covered
    /// the whole scanout, and after a failed send.
    pub(super) display_in_sync: bool,
}

impl VirtioGpu {
    pub(super) fn get_display_info(&mut self) -> Response {
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

    pub(super) fn get_edid(&mut self, scanout: u32) -> GpuResult<Response> {
        let s = self
            .scanouts
            .get(scanout as usize)
            .ok_or_else(|| GpuError::InvalidParameter(format!("EDID of scanout {scanout}")))?;
        let edid = edid_for(s.mode, scanout + 1);
        Ok(Response::Edid(edid.to_vec()))
    }

    pub(super) fn scanout(&self, id: ScanoutId) -> GpuResult<usize> {
        let i = id.0 as usize;
        if i < self.scanouts.len() {
            Ok(i)
        } else {
            Err(GpuError::InvalidScanout(id))
        }
    }

    /// Tells the display the size of what scanout `i` shows, if it changed
    /// (QEMU lags when told again while enabled).
    pub(super) fn announce(&mut self, i: u32) {
        let Some(s) = self.scanouts.get(i as usize) else {
            return;
        };
        let size = match s.shown {
            Shown::Nothing => (0, 0),
            Shown::Image { rect, .. } | Shown::Blob { rect, .. } => (rect.width, rect.height),
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
        self.scanouts[i as usize].display_in_sync = false;
    }

    pub(super) fn show(&mut self, scanout: usize, shown: Shown) -> GpuResult<()> {
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

    pub(super) fn pin_for_scanout(&mut self, res: ResourceId) -> GpuResult<()> {
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

    pub(super) fn unpin_for_scanout(&mut self, res: ResourceId, scanout: usize) {
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
    pub(super) fn scanout_request(
        &mut self,
        scanout_id: ScanoutId,
        res_id: ResourceId,
    ) -> GpuResult<Option<(usize, &Resource)>> {
        let scanout = self.scanout(scanout_id)?;
        if res_id.is_zero() {
            self.show(scanout, Shown::Nothing)?;
            return Ok(None);
        }
        let r = self
            .resources
            .get(&res_id)
            .ok_or(GpuError::InvalidResource(res_id))?;
        Ok(Some((scanout, r)))
    }

    pub(super) fn set_scanout(&mut self, c: &SetScanout) -> GpuResult<Response> {
        let res_id = ResourceId(c.resource_id.get());
        let Some((scanout, r)) = self.scanout_request(ScanoutId(c.scanout_id.get()), res_id)?
        else {
            return Ok(Response::OkNoData);
        };
        let (_, width, height) = r.image().ok_or_else(|| {
            GpuError::InvalidParameter(format!("resource {res_id} is not an image"))
        })?;
        check_rect(&c.r, width, height, false)?;
        check_scanout_side(&c.r)?;
        let rect = Area::of(&c.r);
        self.show(
            scanout,
            Shown::Image {
                resource: res_id,
                rect,
            },
        )?;
        Ok(Response::OkNoData)
    }

    pub(super) fn set_scanout_blob(&mut self, c: &SetScanoutBlob) -> GpuResult<Response> {
        let res_id = ResourceId(c.resource_id.get());
        let Some((scanout, r)) = self.scanout_request(ScanoutId(c.scanout_id.get()), res_id)?
        else {
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
        let rect = Area::of(&c.r);
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

    pub(super) fn resource_flush(
        &mut self,
        c: &ResourceFlush,
        mem: &GuestMem,
    ) -> GpuResult<Response> {
        let res_id = ResourceId(c.resource_id.get());
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
        let flush = Area::of(&c.r);
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
    pub(super) fn send_update(
        &mut self,
        i: u32,
        shown: Shown,
        flush: Area,
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
        let Some(Area {
            x,
            y,
            width: w,
            height: h,
        }) = rect.intersect(&flush)
        else {
            return Ok(());
        };
        let row = w as usize * 4;
        let band = u32::try_from((UPDATE_BAND_BYTES / row.max(1)).max(1)).unwrap_or(u32::MAX);
        // Whether the display's image will equal the frame kept here once
        // this update is sent: only then may unchanged pixels be left out.
        let covers_scanout = (x, y, w, h) == (rect.x, rect.y, rect.width, rect.height);
        let in_sync = self.scanouts[i as usize].display_in_sync;
        let mut pixels = std::mem::take(&mut self.update_scratch);
        let mut sent = Ok(());
        let mut done = 0u32;
        while done < h && sent.is_ok() {
            let rows = band.min(h - done);
            let top = y + done;
            // Every byte is overwritten by the read.
            pixels.resize(row * rows as usize, 0);
            let at = RowsAt {
                first: base + u64::from(top) * u64::from(stride) + u64::from(x) * 4,
                stride: u64::from(stride),
                row,
            };
            let convert = |line: &mut [u8]| to_bgrx_in_place(format, line, false);
            let read = self.read_rows(res_id, at, &mut pixels, convert, mem);
            sent = read.and_then(|()| {
                let (fx, fy) = (x - rect.x, top - rect.y);
                let changed = self.screens.merge(i, fx, fy, w, rows, &pixels);
                let Some(d) = self.display.as_mut() else {
                    return Ok(());
                };
                let send = |d: &mut Box<dyn DisplaySink>, part: Damage, bytes: &[u8]| {
                    d.update(i, fx + part.x, fy + part.y, part.width, part.height, bytes)
                        .map_err(GpuError::Display)
                };
                let whole = Damage {
                    x: 0,
                    y: 0,
                    width: w,
                    height: rows,
                };
                match (in_sync, changed) {
                    (true, None) => Ok(()),
                    (true, Some(part)) if part.width == w => {
                        // Whole rows: one contiguous run of the pixels.
                        let from = part.y as usize * row;
                        send(d, part, &pixels[from..from + part.height as usize * row])
                    }
                    (true, Some(part)) => {
                        let (left, width) = (part.x as usize * 4, part.width as usize * 4);
                        let mut gathered = std::mem::take(&mut self.damage_scratch);
                        gathered.clear();
                        for line in pixels
                            .chunks_exact(row)
                            .skip(part.y as usize)
                            .take(part.height as usize)
                        {
                            gathered.extend_from_slice(&line[left..left + width]);
                        }
                        let r = send(d, part, &gathered);
                        self.damage_scratch = gathered;
                        r
                    }
                    (false, _) => send(d, whole, &pixels),
                }
            });
            done += rows;
        }
        self.update_scratch = pixels;
        // A failed send leaves the display's image unknown.
        self.scanouts[i as usize].display_in_sync =
            sent.is_ok() && (in_sync || covers_scanout) && self.display.is_some();
        sent
    }

    pub(super) fn update_cursor(&mut self, c: &UpdateCursor) -> GpuResult<Response> {
        let scanout = c.pos.scanout_id.get();
        if scanout as usize >= self.scanouts.len() {
            return Err(GpuError::InvalidScanout(ScanoutId(scanout)));
        }
        let (x, y) = (c.pos.x.get(), c.pos.y.get());
        let res_id = ResourceId(c.resource_id.get());
        if res_id.is_zero() {
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

    pub(super) fn move_cursor(&mut self, c: &UpdateCursor) -> GpuResult<Response> {
        let scanout = c.pos.scanout_id.get();
        if scanout as usize >= self.scanouts.len() {
            return Err(GpuError::InvalidScanout(ScanoutId(scanout)));
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
}

pub(super) fn shown_resource(s: Shown) -> Option<ResourceId> {
    match s {
        Shown::Nothing => None,
        Shown::Image { resource, .. } | Shown::Blob { resource, .. } => Some(resource),
    }
}
