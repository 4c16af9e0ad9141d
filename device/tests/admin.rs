//! The admin socket through a real unix socket: every command, every bad
//! input, peer-uid refusal, concurrent clients, and `vgpuctl` itself.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use vgpu_backend::pressure::{MonitorConfig, SourceChoice};
use vgpu_backend::{BufferManager, Madv, ObjectId, OwnerId, Placement, Priority};
use vgpu_device::admin::protocol::{
    EvictReply, ListReply, MetricsReply, PressureReply, SetLimitReply, ShrinkRow, StatsReply,
    MAX_REQUEST_LINE,
};
use vgpu_device::admin::{AdminClient, AdminHandler, AdminServer, ClientError, Request};
use vgpu_device::config::DeviceConfig;
use vgpu_device::service::{Service, ServiceConfig};

const MIB: u64 = 1 << 20;
static NEXT: AtomicU32 = AtomicU32::new(0);

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "vgpu-admin-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A service with an admin socket and a monitor that sees pressure only
/// when told; `vm1` holds 4 WILLNEED and 2 DONTNEED MiB objects in system
/// memory and 2 MiB in the device pool, `vm2` 3 DONTNEED MiB.
struct Rig {
    service: Service,
    vm1: OwnerId,
    vm2: OwnerId,
    dir: PathBuf,
}

impl Rig {
    fn new() -> Self {
        let dir = temp_dir("rig");
        let service = Service::start(ServiceConfig {
            device: DeviceConfig {
                device_memory: 16 * MIB,
                ..DeviceConfig::default()
            },
            monitor: MonitorConfig {
                source: SourceChoice::Meminfo,
                low_watermark: Some(0),
                ..MonitorConfig::default()
            },
            admin_socket: Some(dir.join("admin.sock")),
            gpu: vgpu_backend::intel::detect::GpuChoice::Emulated,
            dri_dir: PathBuf::from("/dev/dri"),
        })
        .unwrap();
        let bm = service.buffer_manager().clone();
        let vm1 = bm.create_owner("vm1", None).unwrap();
        let vm2 = bm.create_owner("vm2", None).unwrap();
        let ctx = bm.create_owner("ctx1:mesa", Some(vm1)).unwrap();
        objects(&bm, vm1, 4, Placement::system(), Madv::WillNeed);
        objects(&bm, ctx, 2, Placement::system(), Madv::DontNeed);
        objects(&bm, vm1, 2, Placement::device_then_system(), Madv::WillNeed);
        objects(&bm, vm2, 3, Placement::system(), Madv::DontNeed);
        Self {
            service,
            vm1,
            vm2,
            dir,
        }
    }

    fn socket(&self) -> &Path {
        self.service.admin_socket().unwrap()
    }

    fn client(&self) -> AdminClient {
        AdminClient::connect(self.socket()).unwrap()
    }

    fn bm(&self) -> &BufferManager {
        self.service.buffer_manager()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn objects(
    bm: &BufferManager,
    owner: OwnerId,
    n: usize,
    p: Placement,
    madv: Madv,
) -> Vec<ObjectId> {
    (0..n)
        .map(|i| {
            let id = bm.create(owner, MIB, p, Priority::NORMAL).unwrap();
            bm.validate(id, None).unwrap();
            bm.write(id, 0, &vec![i as u8 + 1; MIB as usize]).unwrap();
            bm.madvise(id, madv).unwrap();
            id
        })
        .collect()
}

fn call<T: serde::de::DeserializeOwned>(c: &mut AdminClient, v: Value) -> T {
    let reply = c.raw(v.to_string().as_bytes()).unwrap();
    assert!(reply.ok, "{v} -> {reply:?}");
    serde_json::from_value(reply.reply.unwrap()).unwrap()
}

#[track_caller]
fn refused(c: &mut AdminClient, line: &[u8], needle: &str) {
    let reply = c.raw(line).unwrap();
    assert!(
        !reply.ok,
        "{:?} was accepted",
        String::from_utf8_lossy(line)
    );
    let e = reply.error.unwrap();
    assert!(
        e.contains(needle),
        "{:?}: {e:?} does not mention {needle:?}",
        String::from_utf8_lossy(&line[..line.len().min(80)])
    );
}

#[test]
fn stats_show_regions_owners_and_the_monitor() {
    let rig = Rig::new();
    let mut c = rig.client();
    let s: StatsReply = call(&mut c, json!({"cmd": "stats"}));
    assert_eq!(s.driver, "emulated");
    assert_eq!(s.objects, 11);
    let names: Vec<&str> = s.regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let device = &s.regions[1];
    assert!(device.emulated && device.class == "device");
    assert_eq!(device.capacity, Some(16 * MIB));
    assert_eq!(device.resident, 2 * MIB);
    let paths: Vec<&str> = s.owners.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(paths, ["host", "vm1", "vm1/ctx1:mesa", "vm2"]);
    let vm1 = &s.owners[1];
    assert_eq!(
        (vm1.objects, vm1.charged, vm1.purgeable),
        (8, 8 * MIB, 2 * MIB)
    );
    assert_eq!(vm1.resident.get(&s.regions[1].name), Some(&(2 * MIB)));
    assert_eq!(
        s.owners[0].purgeable,
        5 * MIB,
        "the host root sums every VM"
    );
    let kinds: Vec<&str> = s.pressure.sources.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, ["meminfo"]);
    assert!(s.pressure.sources[0].description.contains("MemAvailable"));
}

#[test]
fn list_filters_by_owner_and_state_and_honours_the_limit() {
    let rig = Rig::new();
    let mut c = rig.client();
    let all: ListReply = call(&mut c, json!({"cmd": "list"}));
    assert_eq!(all.objects.len(), 11);
    let mine: ListReply = call(&mut c, json!({"cmd": "list", "owner": "vm1"}));
    assert_eq!(mine.objects.len(), 8, "descendants included");
    let ctx: ListReply = call(
        &mut c,
        json!({"cmd": "list", "owner": "ctx1:mesa", "state": "dontneed"}),
    );
    assert_eq!(ctx.objects.len(), 2);
    assert!(ctx
        .objects
        .iter()
        .all(|o| o.owner == "vm1/ctx1:mesa" && o.state == "dontneed"));
    let dev: Vec<_> = mine
        .objects
        .iter()
        .filter(|o| o.region.as_deref() == Some(rig_device_name(&rig).as_str()))
        .collect();
    assert_eq!(dev.len(), 2);
    assert_eq!(dev[0].placement.len(), 2);
    let few: ListReply = call(&mut c, json!({"cmd": "list", "limit": 3}));
    assert_eq!((few.objects.len(), few.left_off), (3, 8));
    let by_id: ListReply = call(
        &mut c,
        json!({"cmd": "list", "owner": format!("owner{}", rig.vm2.as_u32())}),
    );
    assert_eq!(by_id.objects.len(), 3);
}

fn rig_device_name(rig: &Rig) -> String {
    rig.bm().regions()[1].name.clone()
}

#[test]
fn purge_frees_exactly_the_dontneed_bytes_of_the_owner_asked() {
    let rig = Rig::new();
    let mut c = rig.client();
    let r: ShrinkRow = call(&mut c, json!({"cmd": "purge", "owner": "vm2"}));
    assert_eq!((r.purged_bytes, r.purged_objects), (3 * MIB, 3));
    assert_eq!(r.trigger, "admin-purge:vm2");
    assert_eq!(rig.bm().owner_stats(rig.vm1).unwrap().purged_bytes, 0);
    let r: ShrinkRow = call(&mut c, json!({"cmd": "purge"}));
    assert_eq!(r.purged_bytes, 2 * MIB, "the rest: vm1's context");
    let again: ShrinkRow = call(&mut c, json!({"cmd": "purge"}));
    assert_eq!(again.purged_bytes, 0);
    let p: PressureReply = call(&mut c, json!({"cmd": "pressure"}));
    assert_eq!(p.recent.len(), 3, "every purge is recorded");
    assert_eq!(p.freed_bytes, 5 * MIB);
}

#[test]
fn shrink_evict_and_set_limit_do_what_they_say() {
    let rig = Rig::new();
    let mut c = rig.client();
    let r: ShrinkRow = call(
        &mut c,
        json!({"cmd": "shrink", "bytes": MIB, "mode": "writeback"}),
    );
    assert_eq!((r.mode.as_str(), r.target), ("writeback", MIB));
    assert!(r.purged_bytes >= MIB, "purging comes first: {r:?}");
    let e: EvictReply = call(&mut c, json!({"cmd": "evict"}));
    assert_eq!((e.moved_objects, e.moved_bytes, e.skipped), (2, 2 * MIB, 0));
    assert_eq!(e.regions, [rig_device_name(&rig)]);
    assert_eq!(rig.bm().stats().regions[1].resident, 0);
    let l: SetLimitReply = call(
        &mut c,
        json!({"cmd": "set-limit", "owner": "vm1", "quota": 64 * MIB, "soft_limit": 32 * MIB}),
    );
    assert_eq!(
        (l.owner.as_str(), l.quota, l.soft_limit),
        ("vm1", Some(64 * MIB), Some(32 * MIB))
    );
    let l: SetLimitReply = call(
        &mut c,
        json!({"cmd": "set-limit", "owner": "vm1", "quota": "none"}),
    );
    assert_eq!(
        (l.quota, l.soft_limit),
        (None, Some(32 * MIB)),
        "absent means unchanged"
    );
    let s = rig.bm().owner_stats(rig.vm1).unwrap();
    assert_eq!((s.quota, s.soft_limit), (None, Some(32 * MIB)));
}

#[test]
fn pressure_injects_and_metrics_expose_the_counters() {
    let rig = Rig::new();
    let mut c = rig.client();
    let _: PressureReply = call(&mut c, json!({"cmd": "pressure", "inject": true}));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let p = loop {
        let p: PressureReply = call(&mut c, json!({"cmd": "pressure"}));
        if !p.recent.is_empty() || std::time::Instant::now() > deadline {
            break p;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(p.events, 1);
    assert_eq!(p.recent[0].trigger, "injected");
    assert_eq!(p.recent[0].purged_bytes, 5 * MIB, "all DONTNEED bytes");
    // The meminfo source has no PSI trigger to change.
    refused(
        &mut c,
        br#"{"cmd":"pressure","trigger":"some 100000 2000000"}"#,
        "no PSI trigger",
    );
    refused(
        &mut c,
        br#"{"cmd":"pressure","trigger":"some 1 2"}"#,
        "window",
    );
    let m: MetricsReply = call(&mut c, json!({"cmd": "metrics"}));
    assert!(
        m.text
            .contains("vgpu_owner_purged_bytes_total{owner=\"vm2\"} 3145728"),
        "{}",
        m.text
    );
    assert!(
        m.text.contains("vgpu_pressure_events_total 1"),
        "{}",
        m.text
    );
    assert!(
        m.text.contains(
            "vgpu_pressure_source_signals_total{source=\"meminfo\",path=\"/proc/meminfo\""
        ),
        "{}",
        m.text
    );
    assert!(m
        .text
        .contains("vgpu_shrinks_total{trigger=\"injected\"} 1"));
}

#[test]
fn bad_input_gets_an_error_naming_it_and_the_connection_keeps_serving() {
    let rig = Rig::new();
    let mut c = rig.client();
    let mut other = rig.client();
    let long = format!(
        "{{\"cmd\":\"stats\",\"x\":\"{}\"}}",
        "a".repeat(MAX_REQUEST_LINE)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "malformed JSON"),
        (b"[1,2,3]".to_vec(), "bad request"),
        (br#"{"cmd":"fly"}"#.to_vec(), "unknown variant `fly`"),
        (br#"{"bytes":5}"#.to_vec(), "missing field `cmd`"),
        (
            br#"{"cmd":"shrink","bytes":"lots"}"#.to_vec(),
            "invalid type",
        ),
        (br#"{"cmd":"shrink"}"#.to_vec(), "missing field `bytes`"),
        (br#"{"cmd":"shrink","bytes":-1}"#.to_vec(), "invalid value"),
        (
            br#"{"cmd":"stats","verbose":true}"#.to_vec(),
            "unknown field `verbose`",
        ),
        (b"\xff\xfe".to_vec(), "not UTF-8"),
        (long.into_bytes(), "longer than the 65536-byte limit"),
        (
            br#"{"cmd":"purge","owner":"vm9"}"#.to_vec(),
            "no owner \"vm9\"",
        ),
        (
            br#"{"cmd":"list","state":"sleepy"}"#.to_vec(),
            "state \"sleepy\"",
        ),
        (br#"{"cmd":"list","limit":100000000}"#.to_vec(), "limit"),
        (
            br#"{"cmd":"shrink","bytes":1,"mode":"hard"}"#.to_vec(),
            "mode \"hard\"",
        ),
        (
            br#"{"cmd":"set-limit","owner":"vm1"}"#.to_vec(),
            "needs quota",
        ),
        (
            br#"{"cmd":"set-limit","owner":"vm1","quota":"lots"}"#.to_vec(),
            "\"lots\"",
        ),
        (
            br#"{"cmd":"evict","region":"system"}"#.to_vec(),
            "system memory",
        ),
        (
            br#"{"cmd":"evict","region":"moon"}"#.to_vec(),
            "no region \"moon\"",
        ),
    ];
    for (line, needle) in &cases {
        refused(&mut c, line, needle);
        // Same connection, other connection: both still served.
        let _: StatsReply = call(&mut c, json!({"cmd": "stats"}));
    }
    let _: StatsReply = call(&mut other, json!({"cmd": "stats"}));
    // Nothing was lost.
    assert_eq!(rig.bm().stats().objects, 11);
}

#[test]
fn many_clients_at_once_while_objects_come_and_go() {
    let rig = Rig::new();
    let bm = rig.bm().clone();
    let vm = rig.vm1;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            // Bounded: evicted objects each hold a memfd, and the test
            // process keeps the default open-file limit.
            let mut live = std::collections::VecDeque::new();
            while !stop.load(Ordering::Relaxed) {
                if live.len() >= 200 {
                    if let Some(old) = live.pop_front() {
                        bm.destroy(old).unwrap();
                    }
                }
                let id = bm
                    .create(
                        vm,
                        64 * 1024,
                        Placement::device_then_system(),
                        Priority::NORMAL,
                    )
                    .unwrap();
                bm.write(id, 0, &[7; 4096]).unwrap();
                if n % 2 == 0 {
                    bm.madvise(id, Madv::DontNeed).unwrap();
                }
                if n % 3 == 0 {
                    bm.destroy(id).unwrap();
                } else {
                    live.push_back(id);
                }
                n += 1;
            }
            n
        })
    };
    let socket = rig.socket().to_path_buf();
    let clients: Vec<_> = (0..8)
        .map(|t| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut c = AdminClient::connect(&socket).unwrap();
                for i in 0..40 {
                    let req = match (t + i) % 5 {
                        0 => Request::Stats {},
                        1 => Request::List {
                            owner: Some("vm1".into()),
                            state: None,
                            limit: Some(50),
                        },
                        2 => Request::Purge { owner: None },
                        3 => Request::Evict { region: None },
                        _ => Request::Metrics {},
                    };
                    c.request(&req).unwrap();
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(churn.join().unwrap() > 0);
    let mut c = rig.client();
    let s: StatsReply = call(&mut c, json!({"cmd": "stats"}));
    assert_eq!(
        s.objects as usize,
        rig.bm().list_objects(Default::default()).len()
    );
}

/// Peer credentials: a client of another uid is refused even when the
/// socket file would let it connect.
#[test]
fn a_client_of_another_uid_is_refused() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: needs root to connect as another uid");
        return;
    }
    let rig = Rig::new();
    let dir = temp_dir("open");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.join("open.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let handler = AdminHandler::new(rig.bm().clone(), rig.service.monitor());
    let _server = AdminServer::start(listener, handler, Some(path.clone())).unwrap();
    let p = path.clone();
    let reply = std::thread::spawn(move || {
        // Only this thread changes uid (the raw syscall is per thread).
        rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(65534)).unwrap();
        let mut c = AdminClient::connect(&p).unwrap();
        c.request(&Request::Purge { owner: None })
    })
    .join()
    .unwrap();
    match reply {
        Err(ClientError::Refused(e)) => assert!(e.contains("permission denied: uid 65534"), "{e}"),
        other => panic!("a foreign uid was served: {other:?}"),
    }
    assert_eq!(
        rig.bm().stats().owners[0].purged_bytes,
        0,
        "nothing was purged"
    );
    // Root is served on the same socket.
    let mut c = AdminClient::connect(&path).unwrap();
    c.request(&Request::Stats {}).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn vgpuctl(socket: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vgpuctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn vgpuctl_prints_tables_json_and_clear_errors() {
    let rig = Rig::new();
    let s = stdout(&vgpuctl(rig.socket(), &["stats"]));
    for needle in [
        "REGIONS",
        "OWNERS",
        "PRESSURE",
        "vm1/ctx1:mesa",
        "(emulated)",
        "watching the host's available memory: MemAvailable in /proc/meminfo",
    ] {
        assert!(s.contains(needle), "{needle:?} missing from:\n{s}");
    }
    let j: Value = serde_json::from_str(&stdout(&vgpuctl(
        rig.socket(),
        &["--json", "list", "--owner", "vm2"],
    )))
    .unwrap();
    assert_eq!(j["objects"].as_array().unwrap().len(), 3);
    let s = stdout(&vgpuctl(rig.socket(), &["list", "--state", "dontneed"]));
    assert_eq!(
        s.lines().count(),
        1 + 5,
        "header + 5 DONTNEED objects:\n{s}"
    );
    let s = stdout(&vgpuctl(rig.socket(), &["purge", "--owner", "vm2"]));
    assert!(
        s.starts_with("freed 3.0M (3.0M purged from 3 objects"),
        "{s}"
    );
    let s = stdout(&vgpuctl(
        rig.socket(),
        &["set-limit", "vm1", "--quota", "1G", "--soft-limit", "none"],
    ));
    assert_eq!(s, "vm1: quota 1.0G, soft limit -\n");
    let s = stdout(&vgpuctl(
        rig.socket(),
        &["shrink", "1M", "--mode", "writeback"],
    ));
    assert!(s.starts_with("freed "), "{s}");
    let s = stdout(&vgpuctl(rig.socket(), &["evict"]));
    assert!(s.starts_with("moved 2 objects (2.0M)"), "{s}");
    let s = stdout(&vgpuctl(rig.socket(), &["metrics"]));
    assert!(s.contains("# TYPE vgpu_owner_charged_bytes gauge"));
    let s = stdout(&vgpuctl(rig.socket(), &["pressure", "--inject"]));
    assert!(
        s.starts_with("PRESSURE\nwatching the host's available memory"),
        "{s}"
    );

    // No VM shows anything: the screenshot says so and writes nothing.
    let png = rig.dir.join("shot.png");
    let o = vgpuctl(
        rig.socket(),
        &["screenshot", "--scanout", "0", "-o", png.to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("scanout 0 shows nothing"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!png.exists());
    // Errors name the problem.
    let o = vgpuctl(rig.socket(), &["purge", "--owner", "vm7"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no owner \"vm7\""));
    let o = vgpuctl(rig.socket(), &["shrink", "lots"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"lots\" is not a size"));
    let o = vgpuctl(rig.socket(), &["set-limit", "vm1"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs --quota"));
    let gone = rig.dir.join("nothing.sock");
    let o = vgpuctl(&gone, &["stats"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no vgpu admin socket at"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A stale socket file with no daemon behind it.
    let stale = rig.dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let o = vgpuctl(&stale, &["stats"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("the daemon that created it is gone"));
    // A daemon that takes the connection and never answers.
    let mute = rig.dir.join("mute.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&mute).unwrap();
    let o = vgpuctl(&mute, &["--timeout", "1", "stats"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("did not answer within 1s"), "{err}");
    let o = vgpuctl(&mute, &["--timeout", "0", "stats"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--timeout"));
}

#[test]
fn vgpuctl_as_another_user_cannot_reach_the_private_socket() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: needs root to run a client as another uid");
        return;
    }
    use std::os::unix::process::CommandExt;
    let rig = Rig::new();
    let mode = std::fs::metadata(rig.socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let o = Command::new(env!("CARGO_BIN_EXE_vgpuctl"))
        .arg("--socket")
        .arg(rig.socket())
        .arg("purge")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("permission denied") || err.contains("no vgpu admin socket"),
        "{err}"
    );
    assert_eq!(rig.bm().stats().owners[0].purged_bytes, 0);
}
