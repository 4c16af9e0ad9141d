//! The GEM contexts and GPU address spaces (VMs) of one i915 native
//! context: the ids the guest sees, what each stands for in the host
//! kernel, and — on the emulated device, which has no kernel — the state
//! the kernel would keep (context parameters, which VM a context uses).
//!
//! Guest ids are allocated as the kernel allocates them for a DRM file:
//! the lowest free id from 1 (an xarray with `XA_FLAGS_ALLOC1`), so a guest
//! that creates and destroys contexts keeps small ids and its bans fit in
//! `banned_ctx_mask` (contexts 0–63). Context 0 is the file's default
//! context; on a host GPU it is a private kernel context made on first
//! use, never the daemon's own default context, which every guest context
//! would share. Host ids never reach the guest.
//!
//! Must not: decode requests or write responses (the i915 context does),
//! or call the kernel (its callers do, and record the result here).

use std::collections::BTreeMap;

use vgpu_proto::native::{ENOENT, ENOMEM};

/// What a guest GEM context stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemContext {
    /// The kernel context id (0 on the emulated device).
    pub host: u32,
    /// `I915_CONTEXT_PARAM_PRIORITY` (emulated device).
    pub priority: i64,
    /// `I915_CONTEXT_PARAM_RECOVERABLE` (emulated device).
    pub recoverable: bool,
    /// The VM it runs in: a key of [`GemContexts`]'s VMs (emulated device).
    pub vm: VmKey,
    /// Whether it was used (looked up by GETPARAM, GET_RESET_STATS or an
    /// execbuffer): the kernel builds a context then, and its VM can no
    /// longer change.
    pub finalized: bool,
}

/// Identity of an address space on the emulated device; several guest VM
/// ids may name the same one (GETPARAM(VM) hands out a new id each time,
/// as the kernel does).
pub type VmKey = u64;

/// A guest VM id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemVm {
    /// The kernel VM id (0 on the emulated device).
    pub host: u32,
    /// The address space it names.
    pub key: VmKey,
}

/// The contexts and VM ids of one native context.
#[derive(Debug, Default)]
pub struct GemContexts {
    contexts: BTreeMap<u32, GemContext>,
    vms: BTreeMap<u32, GemVm>,
    next_vm_key: VmKey,
}

impl GemContexts {
    /// The context a guest id names (0: the default context, if it was
    /// made).
    pub fn get(&self, id: u32) -> Option<&GemContext> {
        self.contexts.get(&id)
    }

    /// The context a guest id names, mutable.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut GemContext> {
        self.contexts.get_mut(&id)
    }

    /// Whether the default context (0) exists yet.
    pub fn has_default(&self) -> bool {
        self.contexts.contains_key(&0)
    }

    /// Objects held (contexts and VM ids), for the per-context cap.
    pub fn len(&self) -> usize {
        self.contexts.len() + self.vms.len()
    }

    /// A fresh address space of its own (emulated device).
    pub fn new_vm_key(&mut self) -> VmKey {
        self.next_vm_key += 1;
        self.next_vm_key
    }

    /// Records a new context under the lowest free id ≥ 1; ENOMEM past
    /// `limit` objects.
    pub fn insert(&mut self, ctx: GemContext, limit: usize) -> Result<u32, i32> {
        if self.len() >= limit {
            return Err(ENOMEM);
        }
        let id = lowest_free(&self.contexts);
        self.contexts.insert(id, ctx);
        Ok(id)
    }

    /// Records the default context (id 0).
    pub fn insert_default(&mut self, ctx: GemContext) {
        self.contexts.insert(0, ctx);
    }

    /// Forgets context `id` (not the default); ENOENT if there is none.
    pub fn remove(&mut self, id: u32) -> Result<GemContext, i32> {
        match id {
            0 => Err(ENOENT),
            id => self.contexts.remove(&id).ok_or(ENOENT),
        }
    }

    /// The VM a guest VM id names.
    pub fn vm(&self, id: u32) -> Option<&GemVm> {
        self.vms.get(&id)
    }

    /// Records a VM id under the lowest free id ≥ 1; ENOMEM past `limit`.
    pub fn insert_vm(&mut self, vm: GemVm, limit: usize) -> Result<u32, i32> {
        if self.len() >= limit {
            return Err(ENOMEM);
        }
        let id = lowest_free(&self.vms);
        self.vms.insert(id, vm);
        Ok(id)
    }

    /// Forgets a VM id; ENOENT if there is none. Contexts that use the
    /// address space keep it (the kernel counts references).
    pub fn remove_vm(&mut self, id: u32) -> Result<GemVm, i32> {
        self.vms.remove(&id).ok_or(ENOENT)
    }

    /// Takes everything, to release the kernel objects: contexts (the
    /// default one included), then VM ids.
    pub fn drain(&mut self) -> (Vec<GemContext>, Vec<GemVm>) {
        let contexts = std::mem::take(&mut self.contexts).into_values().collect();
        let vms = std::mem::take(&mut self.vms).into_values().collect();
        (contexts, vms)
    }
}

/// The lowest key ≥ 1 not in `map` (keys are in order, so the first gap).
fn lowest_free<V>(map: &BTreeMap<u32, V>) -> u32 {
    let mut want = 1;
    for id in map.keys().copied().filter(|id| *id >= 1) {
        if id != want {
            break;
        }
        want += 1;
    }
    want
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> GemContext {
        GemContext {
            host: 0,
            priority: 0,
            recoverable: true,
            vm: 1,
            finalized: false,
        }
    }

    #[test]
    fn ids_are_the_lowest_free_from_one_like_the_kernels_xarray() {
        let mut t = GemContexts::default();
        assert_eq!(t.insert(ctx(), 10), Ok(1));
        assert_eq!(t.insert(ctx(), 10), Ok(2));
        assert_eq!(t.insert(ctx(), 10), Ok(3));
        t.remove(2).unwrap();
        assert_eq!(t.insert(ctx(), 10), Ok(2), "the gap is reused");
        t.insert_default(ctx());
        assert_eq!(t.insert(ctx(), 10), Ok(4), "the default context is 0");
        assert_eq!(t.remove(0), Err(ENOENT), "the default cannot be destroyed");
        assert_eq!(t.remove(9), Err(ENOENT));
    }

    #[test]
    fn contexts_and_vms_share_the_cap() {
        let mut t = GemContexts::default();
        assert_eq!(t.insert(ctx(), 2), Ok(1));
        let vm = GemVm { host: 0, key: 5 };
        assert_eq!(t.insert_vm(vm, 2), Ok(1), "VM ids are a space of their own");
        assert_eq!(t.insert(ctx(), 2), Err(ENOMEM));
        assert_eq!(t.insert_vm(vm, 2), Err(ENOMEM));
        assert_eq!(t.remove_vm(1), Ok(vm));
        assert_eq!(t.remove_vm(1), Err(ENOENT));
        let (contexts, vms) = t.drain();
        assert_eq!((contexts.len(), vms.len()), (1, 0));
        assert_eq!(t.len(), 0);
    }
}
