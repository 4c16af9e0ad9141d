//! 3D contexts: what CTX_CREATE makes. A context has an owner account in
//! the buffer manager (a child of its VM's), the resources attached to it,
//! and — for the DRM native context — the i915 protocol state.
//!
//! Must not: touch the virtqueues or the display.

pub mod gem_contexts;
pub mod i915;
pub mod i915_exec;
pub mod i915_ioctl;

use vgpu_backend::OwnerId;

pub use i915::{I915Context, NativeEnv, SubmitOutcome};

/// The kinds of context vgpu runs.
#[derive(Debug)]
pub enum ContextKind {
    /// `context_init` named no capset: a context that can hold resources
    /// (the Linux driver creates one per DRM file) but runs no commands.
    Plain,
    /// DRM native context, i915 flavour.
    I915(Box<I915Context>),
}

/// One context.
#[derive(Debug)]
pub struct Context {
    /// Context id (the guest's).
    pub id: u32,
    /// Debug name the guest gave.
    pub name: String,
    /// Its buffer-manager account.
    pub owner: OwnerId,
    /// Kind and protocol state.
    pub kind: ContextKind,
}

impl Context {
    /// The native i915 state, if this is a native context.
    pub fn i915(&mut self) -> Option<&mut I915Context> {
        match &mut self.kind {
            ContextKind::I915(c) => Some(c),
            ContextKind::Plain => None,
        }
    }
}
