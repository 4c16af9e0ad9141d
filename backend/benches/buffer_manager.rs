//! Buffer-manager benchmarks: `cargo bench -p vgpu-backend`.
//!
//! Every figure is reported as a ratio against a baseline measured in the
//! same run (these machines are shared and noisy; absolute numbers are not
//! comparable between runs):
//!
//! * purge throughput vs a raw `fallocate(PUNCH_HOLE)` of a plain memfd of
//!   the same size (goal ≥ 0.8×);
//! * shrink time (fixed 8-object target) with 1 k, 100 k and 1 M live
//!   objects of which 1 % are DONTNEED (goal ≤ 2× from 1 k to 1 M);
//! * create + populate + destroy of 4 KiB, 1 MiB and 64 MiB objects vs the
//!   bare system calls (memfd_create + ftruncate + seals + write + close);
//! * eviction device → system throughput vs `memcpy` of the same bytes;
//! * heap bytes per live object (goal ≤ 256 B), counted by this binary's
//!   allocator.
//!
//! Set `VGPU_BENCH_QUICK=1` for a short smoke run (fewer samples, 100 k
//! objects at most).

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use vgpu_backend::shmem::ShmemFile;
use vgpu_backend::*;

const MIB: u64 = 1 << 20;

/// Counts live heap bytes, for the metadata-per-object figure.
struct Counting;

static HEAP: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Mean time per iteration of every measurement, over the whole run.
static TOTALS: Mutex<BTreeMap<String, (Duration, u64)>> = Mutex::new(BTreeMap::new());

fn record(name: &str, elapsed: Duration, iters: u64) {
    let mut t = TOTALS.lock().unwrap();
    let e = t.entry(name.to_string()).or_default();
    e.0 += elapsed;
    e.1 += iters;
}

fn mean(name: &str) -> Option<f64> {
    let t = TOTALS.lock().unwrap();
    t.get(name)
        .map(|(d, n)| d.as_secs_f64() / (*n).max(1) as f64)
}

fn quick() -> bool {
    std::env::var_os("VGPU_BENCH_QUICK").is_some()
}

fn filled_memfd(size: u64) -> ShmemFile {
    let f = ShmemFile::create("bench-raw", size).unwrap();
    write_pattern(&f, size);
    f
}

fn write_pattern(f: &ShmemFile, size: u64) {
    let chunk = vec![0x5au8; MIB.min(size) as usize];
    let mut off = 0;
    while off < size {
        let n = (size - off).min(chunk.len() as u64) as usize;
        f.write_at(off, &chunk[..n]).unwrap();
        off += n as u64;
    }
}

fn fill_object(bm: &BufferManager, id: ObjectId, size: u64) {
    bm.with_storage(id, 0, size, |s, at| {
        let chunk = vec![0x5au8; MIB.min(size) as usize];
        let mut off = 0;
        while off < size {
            let n = (size - off).min(chunk.len() as u64) as usize;
            s.file.write_at(at + off, &chunk[..n]).unwrap();
            off += n as u64;
        }
    })
    .unwrap();
}

fn bench_purge(c: &mut Criterion) {
    let mut g = c.benchmark_group("purge");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(if quick() { 1 } else { 4 }));
    for size in [MIB, 64 * MIB] {
        let label = format!("{}MiB", size / MIB);
        g.bench_with_input(
            BenchmarkId::new("raw_punch_hole", &label),
            &size,
            |b, &size| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let f = filled_memfd(size);
                        let t = Instant::now();
                        black_box(f.punch(0, size).unwrap());
                        drop(f);
                        total += t.elapsed();
                    }
                    record(&format!("purge/raw/{label}"), total, iters);
                    total
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("manager_purge", &label),
            &size,
            |b, &size| {
                let bm = BufferManager::emulated(0).unwrap();
                let owner = bm.create_owner("bench", None).unwrap();
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let id = bm
                            .create(owner, size, Placement::system(), Priority::NORMAL)
                            .unwrap();
                        fill_object(&bm, id, size);
                        bm.madvise(id, Madv::DontNeed).unwrap();
                        let t = Instant::now();
                        let report = bm.purge(Some(owner));
                        total += t.elapsed();
                        assert_eq!(report.purged_bytes, size);
                        bm.destroy(id).unwrap();
                    }
                    record(&format!("purge/manager/{label}"), total, iters);
                    total
                })
            },
        );
    }
    g.finish();
}

/// A manager holding `live` objects of one page, 1 % DONTNEED in system
/// memory (populated), the rest WILLNEED in a (sparse) device pool.
fn populated_manager(live: usize) -> (BufferManager, OwnerId) {
    let bm = BufferManager::emulated((live as u64 + 64) * PAGE_SIZE).unwrap();
    let owner = bm.create_owner("bench", None).unwrap();
    for i in 0..live {
        if i % 100 == 0 {
            let id = bm
                .create(owner, PAGE_SIZE, Placement::system(), Priority::NORMAL)
                .unwrap();
            bm.write(id, 0, &[1]).unwrap();
            bm.madvise(id, Madv::DontNeed).unwrap();
        } else {
            let placement = Placement::new(&[Place::new(RegionId::DEVICE)]).unwrap();
            let id = bm
                .create(owner, PAGE_SIZE, placement, Priority::NORMAL)
                .unwrap();
            bm.validate(id, None).unwrap();
        }
    }
    (bm, owner)
}

fn bench_shrink_scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("shrink_1pct_dontneed");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(if quick() { 1 } else { 3 }));
    let sizes: &[usize] = if quick() {
        &[1_000, 100_000]
    } else {
        &[1_000, 100_000, 1_000_000]
    };
    const TARGET_OBJECTS: u64 = 8;
    for &live in sizes {
        let (bm, owner) = populated_manager(live);
        g.bench_with_input(BenchmarkId::from_parameter(live), &live, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Keep the population constant: replace what the last
                    // shrink purged (untimed).
                    let mut fresh = Vec::new();
                    for _ in 0..TARGET_OBJECTS {
                        let id = bm
                            .create(owner, PAGE_SIZE, Placement::system(), Priority::NORMAL)
                            .unwrap();
                        bm.write(id, 0, &[1]).unwrap();
                        bm.madvise(id, Madv::DontNeed).unwrap();
                        fresh.push(id);
                    }
                    let t = Instant::now();
                    let report = bm.shrink(&ShrinkRequest::new(
                        TARGET_OBJECTS * PAGE_SIZE,
                        ShrinkMode::Lazy,
                    ));
                    total += t.elapsed();
                    assert_eq!(report.purged_objects, TARGET_OBJECTS);
                    for id in fresh {
                        let _ = bm.destroy(id);
                    }
                    // Destroy whatever older objects were purged instead.
                    for info in bm.list_objects(ObjectFilter {
                        madv: Some(Madv::Purged),
                        ..ObjectFilter::default()
                    }) {
                        let _ = bm.destroy(info.id);
                    }
                }
                record(&format!("shrink/{live}"), total, iters);
                total
            })
        });
    }
    g.finish();
}

fn bench_lifecycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("create_populate_destroy");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(if quick() { 1 } else { 3 }));
    for size in [4096, MIB, 64 * MIB] {
        let label = format!("{}KiB", size / 1024);
        g.bench_with_input(
            BenchmarkId::new("raw_syscalls", &label),
            &size,
            |b, &size| {
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        black_box(filled_memfd(size));
                    }
                    let total = t.elapsed();
                    record(&format!("cycle/raw/{label}"), total, iters);
                    total
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("manager", &label), &size, |b, &size| {
            let bm = BufferManager::emulated(0).unwrap();
            let owner = bm.create_owner("bench", None).unwrap();
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    let id = bm
                        .create(owner, size, Placement::system(), Priority::NORMAL)
                        .unwrap();
                    fill_object(&bm, id, size);
                    bm.destroy(id).unwrap();
                }
                let total = t.elapsed();
                record(&format!("cycle/manager/{label}"), total, iters);
                total
            })
        });
    }
    g.finish();
}

fn bench_eviction(c: &mut Criterion) {
    let mut g = c.benchmark_group("evict_device_to_system");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(if quick() { 1 } else { 4 }));
    let size = 64 * MIB;
    g.bench_function("memcpy_64MiB", |b| {
        let src = vec![0x5au8; size as usize];
        let mut dst = vec![0u8; size as usize];
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                dst.copy_from_slice(black_box(&src));
                black_box(&mut dst);
            }
            let total = t.elapsed();
            record("evict/memcpy", total, iters);
            total
        })
    });
    g.bench_function("memcpy_fresh_pages_64MiB", |b| {
        let src = vec![0x5au8; size as usize];
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                // A fresh destination faults its pages in, as a new shmem
                // file must allocate them.
                let mut dst: Vec<u8> = Vec::with_capacity(size as usize);
                dst.extend_from_slice(black_box(&src));
                black_box(&mut dst);
                total += t.elapsed();
                drop(dst);
            }
            record("evict/memcpy_fresh", total, iters);
            total
        })
    });
    g.bench_function("manager_64MiB", |b| {
        let bm = BufferManager::emulated(size).unwrap();
        let owner = bm.create_owner("bench", None).unwrap();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let placement = Placement::new(&[
                    Place::new(RegionId::DEVICE),
                    Place::fallback(RegionId::SYSTEM),
                ])
                .unwrap();
                let id = bm.create(owner, size, placement, Priority::NORMAL).unwrap();
                fill_object(&bm, id, size);
                let t = Instant::now();
                let report = bm.evict_region(RegionId::DEVICE);
                total += t.elapsed();
                assert_eq!(report.moved_bytes, size);
                bm.destroy(id).unwrap();
            }
            record("evict/manager", total, iters);
            total
        })
    });
    g.finish();
}

/// Heap bytes per live object, for unpopulated objects and for objects
/// resident in the (sparse) device pool.
fn metadata_per_object() -> Vec<(String, f64)> {
    let n = if quick() { 20_000 } else { 200_000 };
    let mut out = Vec::new();
    for populated in [false, true] {
        let bm = BufferManager::emulated((n as u64 + 1) * PAGE_SIZE).unwrap();
        let owner = bm.create_owner("bench", None).unwrap();
        let placement = Placement::new(&[Place::new(RegionId::DEVICE)]).unwrap();
        let before = HEAP.load(Ordering::Relaxed);
        let mut ids = Vec::with_capacity(n);
        let ids_bytes = (ids.capacity() * size_of::<ObjectId>()) as isize;
        for _ in 0..n {
            let id = bm
                .create(owner, PAGE_SIZE, placement, Priority::NORMAL)
                .unwrap();
            if populated {
                bm.validate(id, None).unwrap();
            }
            ids.push(id);
        }
        let after = HEAP.load(Ordering::Relaxed);
        let per = (after - before - ids_bytes) as f64 / n as f64;
        let what = if populated {
            "resident in device pool"
        } else {
            "unpopulated"
        };
        out.push((what.to_string(), per));
        drop(ids);
    }
    out
}

fn ratio(subject: &str, baseline: &str) -> Option<f64> {
    // Throughput ratio = baseline time / subject time.
    Some(mean(baseline)? / mean(subject)?)
}

fn print_summary(metadata: &[(String, f64)]) {
    println!("\n=== vgpu-backend benchmark summary (ratios measured in this run) ===");
    for label in ["1MiB", "64MiB"] {
        if let Some(r) = ratio(
            &format!("purge/manager/{label}"),
            &format!("purge/raw/{label}"),
        ) {
            println!(
                "purge throughput {label:>6}: {:.2}x raw fallocate punch-hole (goal >= 0.80)  [{:.1} us vs {:.1} us]",
                r,
                mean(&format!("purge/manager/{label}")).unwrap_or(0.0) * 1e6,
                mean(&format!("purge/raw/{label}")).unwrap_or(0.0) * 1e6
            );
        }
    }
    if let Some(base) = mean("shrink/1000") {
        for live in [100_000, 1_000_000] {
            if let Some(t) = mean(&format!("shrink/{live}")) {
                println!(
                    "shrink (8-object target), {live:>7} live vs 1000 live: {:.2}x the time (goal <= 2.00)  [{:.1} us vs {:.1} us]",
                    t / base,
                    t * 1e6,
                    base * 1e6
                );
            }
        }
    }
    for label in ["4KiB", "1024KiB", "65536KiB"] {
        if let (Some(m), Some(r)) = (
            mean(&format!("cycle/manager/{label}")),
            ratio(
                &format!("cycle/manager/{label}"),
                &format!("cycle/raw/{label}"),
            ),
        ) {
            println!(
                "create+populate+destroy {label:>8}: {:>9.0} ops/s, {:.2}x the bare system calls",
                1.0 / m,
                r
            );
        }
    }
    let mbs = |name: &str| 64.0 * MIB as f64 / mean(name).unwrap_or(f64::INFINITY) / 1e6;
    if let (Some(r), Some(rf)) = (
        ratio("evict/manager", "evict/memcpy"),
        ratio("evict/manager", "evict/memcpy_fresh"),
    ) {
        println!(
            "eviction device->system 64MiB: {:.2}x memcpy into warm memory, {:.2}x memcpy into fresh pages  [{:.0} vs {:.0} vs {:.0} MB/s]",
            r,
            rf,
            mbs("evict/manager"),
            mbs("evict/memcpy"),
            mbs("evict/memcpy_fresh")
        );
    }
    for (what, per) in metadata {
        println!("metadata per live object ({what}): {per:.0} bytes (goal <= 256)");
    }
}

fn main() {
    if let Err(e) = host::raise_fd_limit() {
        eprintln!("could not raise the fd limit: {e}");
    }
    let metadata = metadata_per_object();
    let mut c = Criterion::default().configure_from_args();
    bench_purge(&mut c);
    bench_shrink_scaling(&mut c);
    bench_lifecycle(&mut c);
    bench_eviction(&mut c);
    c.final_summary();
    print_summary(&metadata);
}
