//! The machine's own limits, measured in the same run as the backends:
//! memcpy bandwidth and fallocate(PUNCH_HOLE) of a memfd.

use std::hint::black_box;
use std::time::{Duration, Instant};

use vgpu_backend::shmem::ShmemFile;

use super::stats::Measurement;

/// Copies `bytes` from one warm buffer to another for `duration`.
pub fn memcpy(bytes: usize, duration: Duration) -> Measurement {
    let src: Vec<u8> = (0..bytes).map(|i| i as u8).collect();
    let mut dst = vec![0u8; bytes];
    dst.copy_from_slice(&src); // warm both
    let mut m = Measurement::default();
    let start = Instant::now();
    while start.elapsed() < duration {
        let t = Instant::now();
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
        m.latencies_ns.push(t.elapsed().as_nanos() as u64);
        m.ops += 1;
        m.bytes += bytes as u64;
    }
    m.elapsed = start.elapsed();
    m
}

/// Fills a `bytes` memfd and punches it empty again, for `duration`; only
/// the punch is timed.
pub fn punch(bytes: u64, duration: Duration) -> std::io::Result<Measurement> {
    let file = ShmemFile::create("vgpu-bench:punch", bytes)?;
    let fill = vec![0x5au8; bytes as usize];
    let mut m = Measurement::default();
    let start = Instant::now();
    let mut timed = Duration::ZERO;
    while start.elapsed() < duration {
        file.write_at(0, &fill)?;
        let t = Instant::now();
        let released = file.punch(0, bytes)?;
        let d = t.elapsed();
        timed += d;
        m.latencies_ns.push(d.as_nanos() as u64);
        m.ops += 1;
        m.bytes += released;
    }
    m.elapsed = timed;
    Ok(m)
}
