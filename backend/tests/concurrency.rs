//! Concurrency stress: device-like threads (create, write, read back,
//! validate, madvise, pin, busy fences, destroy) race a shrinker thread
//! (purge, lazy and writeback shrinks, evictions), an admin thread (stats
//! and listings) and a teardown thread. Invariants are checked as the
//! threads go (no read ever returns bytes other than those written, a
//! WILLNEED object answered `retained = true` is intact) and at the end
//! (accounting adds up, teardown returns every byte).

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use vgpu_backend::*;

const RUN: Duration = Duration::from_millis(1500);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Mine {
    id: ObjectId,
    byte: u8,
    written: bool,
    dontneed: bool,
    pinned: bool,
    fence: Option<Fence>,
}

fn device_thread(
    bm: BufferManager,
    seed: u64,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
) -> Result<(), String> {
    let mut rng = Rng(seed);
    let owner = bm
        .create_owner(&format!("vm{seed}"), None)
        .map_err(|e| e.to_string())?;
    let mut objs: Vec<Mine> = Vec::new();
    let placements = [
        Placement::system(),
        Placement::device_then_system(),
        Placement::new(&[
            Place::desired(RegionId::DEVICE),
            Place::fallback(RegionId::SYSTEM),
        ])
        .unwrap(),
    ];
    while !stop.load(Ordering::Relaxed) {
        ops.fetch_add(1, Ordering::Relaxed);
        match rng.below(10) {
            0 | 1 if objs.len() < 24 => {
                let pages = 1 + rng.below(8);
                let p = placements[rng.below(3) as usize];
                let id = bm
                    .create(owner, pages * PAGE, p, Priority::new(rng.below(4) as u8))
                    .map_err(|e| e.to_string())?;
                objs.push(Mine {
                    id,
                    byte: rng.below(255) as u8 + 1,
                    written: false,
                    dontneed: false,
                    pinned: false,
                    fence: None,
                });
            }
            2 | 3 if !objs.is_empty() => {
                let pick = rng.below(objs.len() as u64) as usize;
                let m = &mut objs[pick];
                let size = bm.size(m.id).map_err(|e| e.to_string())?;
                match bm.write(m.id, 0, &vec![m.byte; size as usize]) {
                    Ok(()) => m.written = true,
                    Err(BoError::Purged(_)) if m.dontneed => {}
                    Err(BoError::NoSpace { .. }) => {}
                    Err(e) => return Err(format!("write {}: {e}", m.id)),
                }
            }
            4 | 5 if !objs.is_empty() => {
                let m = &objs[rng.below(objs.len() as u64) as usize];
                match contents(&bm, m.id) {
                    Ok(bytes) => {
                        let want = if m.written { m.byte } else { 0 };
                        if bytes.iter().any(|b| *b != want) {
                            return Err(format!("{} corrupt: wanted {want:#x}", m.id));
                        }
                    }
                    Err(BoError::Purged(_)) if m.dontneed => {}
                    Err(BoError::NoSpace { .. }) => {}
                    Err(e) => return Err(format!("read {}: {e}", m.id)),
                }
            }
            6 if !objs.is_empty() => {
                let i = rng.below(objs.len() as u64) as usize;
                let m = &mut objs[i];
                if m.dontneed {
                    let retained = bm
                        .madvise(m.id, Madv::WillNeed)
                        .map_err(|e| e.to_string())?;
                    if retained {
                        m.dontneed = false;
                    } else {
                        // Purged: the guest frees it, as Mesa does.
                        let m = objs.swap_remove(i);
                        bm.destroy(m.id).map_err(|e| e.to_string())?;
                    }
                } else if !m.pinned {
                    bm.madvise(m.id, Madv::DontNeed)
                        .map_err(|e| e.to_string())?;
                    m.dontneed = true;
                }
            }
            7 if !objs.is_empty() => {
                let pick = rng.below(objs.len() as u64) as usize;
                let m = &mut objs[pick];
                if m.pinned {
                    bm.unpin(m.id, PinReason::Mapped)
                        .map_err(|e| e.to_string())?;
                    m.pinned = false;
                } else {
                    match bm.pin(m.id, PinReason::Mapped) {
                        Ok(_) => m.pinned = true,
                        Err(BoError::Purged(_)) if m.dontneed => {}
                        Err(BoError::NoSpace { .. }) => {}
                        Err(e) => return Err(format!("pin {}: {e}", m.id)),
                    }
                }
            }
            8 if !objs.is_empty() => {
                let pick = rng.below(objs.len() as u64) as usize;
                let m = &mut objs[pick];
                match m.fence.take() {
                    Some(f) => f.signal(),
                    None => {
                        let f = Fence::new();
                        bm.set_busy(m.id, f.clone()).map_err(|e| e.to_string())?;
                        m.fence = Some(f);
                    }
                }
            }
            9 if !objs.is_empty() => {
                let m = objs.swap_remove(rng.below(objs.len() as u64) as usize);
                bm.destroy(m.id).map_err(|e| e.to_string())?;
            }
            _ => {}
        }
    }
    // Every surviving WILLNEED object that was written is intact.
    for m in &objs {
        if !m.dontneed && m.written {
            let bytes = contents(&bm, m.id).map_err(|e| format!("final read {}: {e}", m.id))?;
            if bytes.iter().any(|b| *b != m.byte) {
                return Err(format!("{} corrupt at the end", m.id));
            }
        }
    }
    Ok(())
}

#[test]
fn device_threads_shrinker_admin_and_teardown_race_safely() {
    let bm = BufferManager::emulated_with_cache(64 * PAGE, 32 * PAGE).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for seed in 1..=3u64 {
        let (bm, stop, ops) = (bm.clone(), stop.clone(), ops.clone());
        workers.push(thread::spawn(move || {
            device_thread(bm, seed * 0x9e37_79b9, stop, ops)
        }));
    }
    let shrinker = {
        let (bm, stop) = (bm.clone(), stop.clone());
        thread::spawn(move || {
            let mut rng = Rng(77);
            let (mut purged, mut rounds) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                rounds += 1;
                let report = match rng.below(4) {
                    0 => bm.purge(None),
                    1 => bm.shrink(&ShrinkRequest::new(rng.below(64) * PAGE, ShrinkMode::Lazy)),
                    2 => bm.shrink(&ShrinkRequest::new(
                        rng.below(64) * PAGE,
                        ShrinkMode::Writeback,
                    )),
                    _ => {
                        bm.evict_region(RegionId::DEVICE);
                        ShrinkReport::default()
                    }
                };
                purged += report.purged_objects;
                thread::yield_now();
            }
            (purged, rounds)
        })
    };
    let admin = {
        let (bm, stop) = (bm.clone(), stop.clone());
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let stats = bm.stats();
                assert!(stats.regions[1].used <= 64 * PAGE);
                let _ = bm.list_objects(ObjectFilter {
                    madv: Some(Madv::DontNeed),
                    ..ObjectFilter::default()
                });
                n += 1;
                thread::sleep(Duration::from_millis(1));
            }
            n
        })
    };
    let teardown = {
        let (bm, stop) = (bm.clone(), stop.clone());
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let owner = bm.create_owner("transient", None).unwrap();
                for i in 0..8u64 {
                    let id = bm
                        .create(
                            owner,
                            (1 + i % 3) * PAGE,
                            Placement::device_then_system(),
                            Priority::NORMAL,
                        )
                        .unwrap();
                    let _ = bm.write(id, 0, &[1; 64]);
                    if i % 2 == 0 {
                        bm.madvise(id, Madv::DontNeed).unwrap();
                    }
                }
                bm.destroy_owner(owner).unwrap();
                assert!(bm.owner_stats(owner).is_err());
                n += 1;
            }
            n
        })
    };
    let started = Instant::now();
    thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join()
            .expect("device thread panicked")
            .expect("device thread invariant");
    }
    let (purged, rounds) = shrinker.join().expect("shrinker panicked");
    let admin_rounds = admin.join().expect("admin panicked");
    let teardowns = teardown.join().expect("teardown panicked");
    eprintln!(
        "{} device ops, {rounds} shrinker rounds ({purged} purges), {admin_rounds} admin snapshots, {teardowns} teardowns in {:?}",
        ops.load(Ordering::Relaxed),
        started.elapsed()
    );
    assert!(
        ops.load(Ordering::Relaxed) > 100 && rounds > 10 && teardowns > 1,
        "every thread made progress"
    );

    check_accounting(&bm);
    for owner in bm
        .stats()
        .owners
        .iter()
        .filter(|o| o.parent == Some(bm.root()))
    {
        bm.destroy_owner(owner.id).unwrap();
    }
    let stats = bm.stats();
    assert_eq!(stats.objects, 0);
    assert_eq!(stats.owners[0].charged, 0);
    assert!(
        stats.regions.iter().all(|r| r.used == 0 && r.resident == 0),
        "{:?}",
        stats.regions
    );
}
