//! Scratch memory behind guest mappings of purged buffers, and the purge
//! notices that let the device remap them.
//!
//! The hazard: a guest maps a blob (the VMM maps the blob's memfd into the
//! host-visible region), marks it DONTNEED, the shrinker purges it — and
//! the VMM's mapping keeps the file alive. A guest that writes through the
//! mapping afterwards faults fresh pages into a file nobody accounts for;
//! looping map → DONTNEED → purge → write, a hostile guest could hold any
//! amount of host memory beyond its quota.
//!
//! What vgpu does instead:
//!
//! 1. A purge of an object the guest still maps punches its pages (counted
//!    as purged, as always) but keeps the file in the object's **limbo**
//!    until the last guest mapping is gone, and tells whoever watches the
//!    VM ([`BufferManager::watch_purges`]: the device) through an eventfd.
//! 2. The device remaps the guest's range over the VM's **scratch file**
//!    (SHMEM_UNMAP + SHMEM_MAP of [`BufferManager::scratch_map`]) and drops
//!    its mapping pin, which releases the limbo file. Every purged range of
//!    a VM maps the *same* scratch pages (offset 0), so whatever the guest
//!    writes there is bounded by its largest purged mapping.
//! 3. The VM is charged a **scratch reservation**: the largest of its
//!    ranges on the scratch file and of its limbo objects. It replaces the
//!    purged object's own charge (never larger than a charge just
//!    returned), so the quota keeps holding.
//! 4. Every shrink covering the VM punches its scratch file and its limbo
//!    files (reported as `scratch_bytes`, never counted towards a target).
//!
//! Owns: the per-VM scratch state (on the VM's account) and the purge
//! notifier. Lock order: an object's lock, then a scratch lock (a leaf);
//! the shrinker copies limbo ids out under the scratch lock and only then
//! `try_lock`s the objects.

use std::collections::BTreeMap;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, MutexGuard};

use crate::account::OwnerAccount;
use crate::error::{BoError, BoResult};
use crate::mailbox::Mailbox;
use crate::manager::{BufferManager, Inner, MapTarget, MAX_OBJECT_SIZE};
use crate::object::Object;
use crate::region::Caching;
use crate::shmem::ShmemFile;
use crate::types::{ObjectId, OwnerId, RegionId};

/// A VM's scratch state.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// The scratch file (sparse, created on first use, never shrunk while
    /// a range maps it).
    file: Option<ShmemFile>,
    /// Guest ranges mapped onto the file: length → how many.
    ranges: BTreeMap<u64, u32>,
    /// Purged objects a guest still maps: id → size.
    limbo: BTreeMap<ObjectId, u64>,
    /// Bytes charged to the VM for all of the above.
    reserved: u64,
}

impl Scratch {
    fn wanted(&self) -> u64 {
        let range = self.ranges.keys().next_back().copied().unwrap_or(0);
        let limbo = self.limbo.values().max().copied().unwrap_or(0);
        range.max(limbo)
    }

    /// Brings the reservation charged to `top` in line with what is
    /// mapped; drops the file once nothing maps it.
    fn settle(&mut self, top: &OwnerAccount) {
        let wanted = self.wanted();
        if wanted > self.reserved {
            top.force_charge(wanted - self.reserved);
        } else if wanted < self.reserved {
            top.uncharge(self.reserved - wanted);
        }
        self.reserved = wanted;
        if self.ranges.is_empty() {
            // Nothing maps it: closing it frees its pages.
            self.file = None;
        }
    }
}

/// Who hears of purges of buffers a guest still maps.
pub(crate) type PurgeNotifier = Mailbox<ObjectId>;

/// The device's end of [`BufferManager::watch_purges`]: an eventfd that
/// becomes readable when a mapped buffer of the VM was purged, and the
/// purged objects.
#[derive(Debug, Clone)]
pub struct PurgeWatch {
    notifier: Arc<PurgeNotifier>,
}

impl PurgeWatch {
    /// The eventfd to poll (readable when [`Self::drain`] has something).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.notifier.fd()
    }

    /// The objects purged while mapped since the last call (clears the
    /// eventfd).
    pub fn drain(&self) -> Vec<ObjectId> {
        self.notifier.drain()
    }
}

fn scratch(top: &OwnerAccount) -> MutexGuard<'_, Scratch> {
    top.scratch.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    /// An object the guest still maps was just purged and uncharged; its
    /// file is in its limbo. Called with the object's lock held.
    pub(crate) fn enter_limbo(&self, obj: &Object) {
        let top = obj.owner.top();
        {
            let mut sc = scratch(top);
            sc.limbo.insert(obj.id, obj.size);
            sc.settle(top);
        }
        let watch = top
            .purge_watch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(w) = watch {
            w.send(obj.id);
        }
    }

    /// The object's limbo file was released. Called with its lock held.
    pub(crate) fn leave_limbo(&self, obj: &Object) {
        let top = obj.owner.top();
        let mut sc = scratch(top);
        if sc.limbo.remove(&obj.id).is_some() {
            sc.settle(top);
        }
    }

    /// Punches the scratch and limbo files of the VMs `owner` belongs to
    /// or contains (every VM for `None`); the bytes really released.
    pub(crate) fn punch_scratch(&self, owner: Option<OwnerId>) -> u64 {
        let tops: Vec<Arc<OwnerAccount>> = self
            .owners_read()
            .values()
            .filter(|a| a.parent.as_ref().is_some_and(|p| p.parent.is_none()))
            .filter(|a| match owner {
                None => true,
                // The VM itself, one of its ancestors, or one of its contexts.
                Some(o) => a.is_within(o) || self.owner(o).is_ok_and(|x| x.top().id == a.id),
            })
            .cloned()
            .collect();
        let mut freed = 0;
        for top in tops {
            let limbo: Vec<ObjectId> = {
                let sc = scratch(&top);
                if let Some(f) = &sc.file {
                    freed += f.punch(0, f.size()).unwrap_or_else(|e| {
                        log::warn!("punching {}'s scratch file failed: {e}", top.name);
                        0
                    });
                }
                sc.limbo.keys().copied().collect()
            };
            for id in limbo {
                let Ok(obj) = self.get(id) else { continue };
                let Some(st) = obj.try_lock() else { continue };
                if let Some((region, backing)) = &st.limbo {
                    let punched = self
                        .region(*region)
                        .ok()
                        .and_then(|r| r.storage(backing).ok())
                        .map(|s| s.file.punch(s.offset, s.len));
                    match punched {
                        Some(Ok(n)) => freed += n,
                        Some(Err(e)) => log::warn!("punching purged {id}'s file failed: {e}"),
                        None => {}
                    }
                }
            }
        }
        freed
    }

    /// Bytes the VM's scratch and limbo files hold now (measured), and its
    /// reservation.
    pub(crate) fn scratch_usage(&self, top: &OwnerAccount) -> (u64, u64) {
        let (mut held, reserved, limbo) = {
            let sc = scratch(top);
            let held = sc
                .file
                .as_ref()
                .map_or(0, |f| f.allocated_bytes().unwrap_or(0));
            (
                held,
                sc.reserved,
                sc.limbo.keys().copied().collect::<Vec<_>>(),
            )
        };
        for id in limbo {
            let Ok(obj) = self.get(id) else { continue };
            let st = obj.lock();
            if let Some((region, backing)) = &st.limbo {
                if let Some(s) = self
                    .region(*region)
                    .ok()
                    .and_then(|r| r.storage(backing).ok())
                {
                    held += s.file.resident(s.offset, s.len).unwrap_or(0);
                }
            }
        }
        (held, reserved)
    }

    /// Forgets a VM's scratch state (its owner is being destroyed).
    pub(crate) fn drop_scratch(&self, top: &OwnerAccount) {
        let mut sc = scratch(top);
        sc.ranges.clear();
        sc.limbo.clear();
        sc.settle(top);
    }
}

impl BufferManager {
    /// Starts telling the caller (the device of VM `owner`) about purges
    /// of buffers the guest still maps, so it can remap them over the VM's
    /// scratch file (see the module docs). One watcher per VM; a new call
    /// replaces the old one.
    pub fn watch_purges(&self, owner: OwnerId) -> BoResult<PurgeWatch> {
        let account = self.inner.owner(owner)?;
        let notifier =
            Arc::new(PurgeNotifier::new().map_err(BoError::io("creating the purge eventfd"))?);
        *account
            .top()
            .purge_watch
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(notifier.clone());
        Ok(PurgeWatch { notifier })
    }

    /// Where to map a guest range of `len` bytes over VM `owner`'s scratch
    /// file: a descriptor, offset 0, cached. Charged to the VM as part of
    /// its scratch reservation until [`Self::scratch_unmap`].
    pub fn scratch_map(&self, owner: OwnerId, len: u64) -> BoResult<MapTarget> {
        if len == 0 || len > MAX_OBJECT_SIZE {
            return Err(BoError::InvalidSize { size: len });
        }
        let account = self.inner.owner(owner)?;
        let top = account.top();
        let mut sc = scratch(top);
        if sc.file.is_none() {
            let name = format!("vgpu:{}:scratch", top.name);
            sc.file = Some(
                ShmemFile::create(&name, MAX_OBJECT_SIZE)
                    .map_err(BoError::io("creating a scratch file"))?,
            );
        }
        let fd = match &sc.file {
            Some(f) => f
                .fd()
                .try_clone_to_owned()
                .map_err(BoError::io("duplicating the scratch file"))?,
            None => return Err(BoError::InvalidSize { size: len }),
        };
        *sc.ranges.entry(len).or_default() += 1;
        sc.settle(top);
        Ok(MapTarget {
            fd,
            offset: 0,
            len,
            caching: Caching::Cached,
            region: RegionId::SYSTEM,
        })
    }

    /// A guest range of `len` bytes no longer maps VM `owner`'s scratch
    /// file.
    pub fn scratch_unmap(&self, owner: OwnerId, len: u64) -> BoResult<()> {
        let account = self.inner.owner(owner)?;
        let top = account.top();
        let mut sc = scratch(top);
        match sc.ranges.get_mut(&len) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                sc.ranges.remove(&len);
            }
            None => return Err(BoError::InvalidSize { size: len }),
        }
        sc.settle(top);
        Ok(())
    }
}
