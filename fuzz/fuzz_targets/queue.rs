//! Target 6: the queue layer itself — what a broken or hostile driver can
//! put in the descriptor table and the avail ring (chains that loop, run
//! off the table, point outside guest memory, mix readable and writable
//! descriptors, use INDIRECT; heads out of range or reused; huge lengths),
//! kicks, fence ticks, ring stops and restarts, a new driver instance —
//! through the backend's real `VhostUserBackend::handle_event` over
//! virtio-queue's split queue in guest memory. Nothing may panic, and
//! after every input the VM must hold nothing.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vgpu_device::testutils::{guest_memory, QueueRig, Rig, BM, DATA_START};

/// Guest memory: rings, data area, and room for descriptors to point at.
const MEM: usize = 4 << 20;

#[derive(Debug, Arbitrary)]
enum Op {
    /// A raw descriptor; `addr` is folded into guest memory unless `wild`.
    Desc {
        queue: u8,
        index: u16,
        addr: u32,
        wild: bool,
        len: u16,
        flags: u8,
        next: u16,
    },
    /// A raw avail-ring entry.
    Avail {
        queue: u8,
        head: u16,
    },
    /// A command's bytes written where descriptors may point.
    Bytes {
        at: u16,
        data: Vec<u8>,
    },
    Kick {
        queue: u8,
    },
    Tick,
    Stop {
        queue: u8,
    },
    Start {
        queue: u8,
        base: u16,
    },
    NewDriver {
        queue: u8,
    },
}

fuzz_target!(|ops: Vec<Op>| {
    let mem = guest_memory(MEM);
    let Ok(mut rig) = QueueRig::new(&mem, Rig::small_config(), BM.clone()) else {
        return;
    };
    for op in ops.into_iter().take(96) {
        match op {
            Op::Desc {
                queue,
                index,
                addr,
                wild,
                len,
                flags,
                next,
            } => {
                let addr = if wild {
                    u64::from(addr) << 12
                } else {
                    DATA_START + u64::from(addr) % (MEM as u64 - DATA_START)
                };
                rig.raw_descriptor(
                    u16::from(queue),
                    index,
                    addr,
                    u32::from(len),
                    u16::from(flags) & 0x7,
                    next,
                );
            }
            Op::Avail { queue, head } => rig.raw_avail(u16::from(queue), head),
            Op::Bytes { at, data } => {
                let at = DATA_START + u64::from(at) * 64;
                let n = data.len().min(4096);
                if at as usize + n <= MEM {
                    rig.write(vm_memory::GuestAddress(at), &data[..n]);
                }
            }
            Op::Kick { queue } => {
                let _ = rig.kick(u16::from(queue % 2));
            }
            Op::Tick => {
                let _ = rig.tick();
            }
            Op::Stop { queue } => {
                let _ = rig.stop(u16::from(queue % 2));
            }
            Op::Start { queue, base } => {
                let _ = rig.start(u16::from(queue % 2), base);
            }
            Op::NewDriver { queue } => rig.new_driver_ring(u16::from(queue % 2)),
        }
    }
    rig.finish();
});
