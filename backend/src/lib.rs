//! # vgpu-backend: the host buffer manager
//!
//! Owns host buffer objects for owners (a VM, a guest context): where each
//! lives, its shmem backing, guest madvise, purge and the shrinker. Knows
//! nothing of virtio. Built in the buffer-manager issue; empty until then.

#![deny(missing_docs)]
