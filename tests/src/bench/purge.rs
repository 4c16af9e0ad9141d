//! Shrinker purge time against the number of live objects, on vgpu's
//! buffer manager in this process: `live` objects of one page, 1 % of them
//! DONTNEED and populated, the rest WILLNEED in a sparse emulated device
//! pool; one purge of everything purgeable is timed, then the population
//! is refilled (untimed).

use std::time::{Duration, Instant};

use vgpu_backend::{BufferManager, Madv, ObjectId, Placement, Priority, PAGE_SIZE};

use super::stats::Measurement;

/// Times purges with `live` live objects for about `duration`.
pub fn purge_scaling(live: usize, duration: Duration) -> std::io::Result<Measurement> {
    let io = |e: vgpu_backend::BoError| std::io::Error::other(e.to_string());
    vgpu_backend::host::raise_fd_limit()?;
    let dontneed = (live / 100).max(1);
    let bm = BufferManager::emulated((live as u64 + 16) * PAGE_SIZE).map_err(io)?;
    let vm = bm.create_owner("bench", None).map_err(io)?;
    for _ in 0..live - dontneed {
        let id = bm
            .create(
                vm,
                PAGE_SIZE,
                Placement::device_then_system(),
                Priority::NORMAL,
            )
            .map_err(io)?;
        bm.validate(id, None).map_err(io)?;
    }
    let refill = |bm: &BufferManager| -> std::io::Result<Vec<ObjectId>> {
        (0..dontneed)
            .map(|_| {
                let id = bm
                    .create(vm, PAGE_SIZE, Placement::system(), Priority::NORMAL)
                    .map_err(io)?;
                bm.write(id, 0, &[1]).map_err(io)?;
                bm.madvise(id, Madv::DontNeed).map_err(io)?;
                Ok(id)
            })
            .collect()
    };
    let mut m = Measurement::default();
    let start = Instant::now();
    let mut timed = Duration::ZERO;
    while start.elapsed() < duration || m.ops == 0 {
        let ids = refill(&bm)?;
        let t = Instant::now();
        let report = bm.purge(None);
        let d = t.elapsed();
        if report.purged_objects != dontneed as u64 {
            return Err(std::io::Error::other(format!(
                "purged {} of {dontneed} objects",
                report.purged_objects
            )));
        }
        timed += d;
        m.latencies_ns.push(d.as_nanos() as u64);
        m.ops += report.purged_objects;
        m.bytes += report.purged_bytes;
        for id in ids {
            bm.destroy(id).map_err(io)?;
        }
    }
    m.elapsed = timed;
    Ok(m)
}
