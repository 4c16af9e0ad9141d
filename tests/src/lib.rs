//! # vgpu-tests: the vhost-user frontend harness
//!
//! A vhost-user *frontend* that plays QEMU (or crosvm) and the guest driver
//! against a real backend over a real socket:
//!
//! * [`backend`] starts the vgpu daemon in this process (its buffer
//!   manager at hand for assertions) or any backend program;
//! * [`vmm`] connects, negotiates features and protocol features, shares
//!   memfd guest RAM with SET_MEM_TABLE, lays out both split virtqueues in
//!   it, sends GPU_SET_SOCKET with a recording display ([`display`]) and
//!   serves SHMEM_MAP into a host-visible region ([`hostmem`]) so tests can
//!   read and write blobs as a guest does;
//! * [`guest`] is the guest side: RAM and driver-side split queues;
//! * [`cmd`] builds the common virtio-gpu and native-context requests.
//!
//! The same library drives the benchmark tool.

#![deny(missing_docs)]

pub mod backend;
pub mod bench;
pub mod cmd;
pub mod cpu;
pub mod display;
pub mod guest;
pub mod guest_run;
pub mod hostmem;
pub mod libvirt;
pub mod qemu;
pub mod squeeze;
pub mod vmm;
