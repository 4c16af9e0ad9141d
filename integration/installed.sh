#!/usr/bin/env bash
# Checks the installed vgpu package (apt-get install ./vgpu_*.deb first;
# .ci/run does): its files, the QEMU/libvirt descriptor against the
# daemon's --print-capabilities, the man pages and completions, the
# systemd units (systemd-analyze verify), then runs the INSTALLED daemon
# against the vhost-user harness twice — started with --socket-path, and
# socket-activated as vgpu@.socket would (systemd-socket-activate sets
# LISTEN_FDS) — and vgpuctl --all with its node_exporter textfile.
#
#   integration/installed.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "installed.sh: $*" >&2; }
fail() { echo "installed.sh: FAIL: $*" >&2; exit 1; }

daemon=/usr/libexec/vhost-user-vgpu
ctl=/usr/bin/vgpuctl
descriptor=/usr/share/qemu/vhost-user/40-vgpu.json

dpkg -s vgpu >/dev/null 2>&1 || fail "the vgpu package is not installed"
log "package $(dpkg-query -W -f '${Package} ${Version}' vgpu)"
for f in "$daemon" "$ctl" "$descriptor" \
    /usr/lib/systemd/system/vgpu@.service /usr/lib/systemd/system/vgpu@.socket \
    /usr/lib/systemd/system/vgpu-metrics.service /usr/lib/systemd/system/vgpu-metrics.timer \
    /usr/lib/tmpfiles.d/vgpu.conf \
    /usr/share/bash-completion/completions/vgpuctl /usr/share/zsh/vendor-completions/_vgpuctl \
    /usr/share/fish/vendor_completions.d/vgpuctl.fish; do
    dpkg -S "$f" >/dev/null 2>&1 || fail "$f is not in the package"
    [ -e "$f" ] || fail "$f is missing"
done
log "PASS files: daemon, vgpuctl, descriptor, units, tmpfiles, completions"

# The descriptor names the installed daemon and its type; the daemon's
# capabilities parse as vhost-user.json says.
python3 - "$descriptor" "$daemon" <<'PY' || fail "descriptor/capabilities mismatch"
import json, subprocess, sys
d = json.load(open(sys.argv[1]))
caps = json.loads(subprocess.run([sys.argv[2], "--print-capabilities"],
                                 capture_output=True, check=True).stdout)
assert d["binary"] == sys.argv[2], d
assert d["type"] == caps["type"] == "gpu", (d, caps)
assert "virgl" in caps["features"], caps
print("installed.sh: PASS descriptor: %s, capabilities %s" % (d["binary"], caps["features"]),
      file=sys.stderr)
PY

for page in vhost-user-vgpu vgpuctl vgpuctl-stats vgpuctl-metrics; do
    man -w "$page" >/dev/null 2>&1 || fail "no man page $page(1)"
done
bash -c 'source /usr/share/bash-completion/completions/vgpuctl && complete -p vgpuctl' >/dev/null ||
    fail "the bash completion defines nothing for vgpuctl"
log "PASS man pages and completions"

if command -v systemd-analyze >/dev/null 2>&1; then
    systemd-analyze verify /usr/lib/systemd/system/vgpu@.socket \
        /usr/lib/systemd/system/vgpu-metrics.timer 2>&1 | sed 's/^/  /' >&2 ||
        fail "systemd-analyze verify"
    log "PASS systemd-analyze verify"
fi

log "building the harness (vgpu-bench)"
cargo build --quiet -p vgpu-tests --bin vgpu-bench
bench=target/debug/vgpu-bench
work=$(mktemp -d /tmp/vgpu-installed.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

log "the installed daemon, --socket-path, against the harness"
"$bench" --smoke --backends-only --work "$work/bench" \
    --daemon "$daemon" > "$work/bench.out" 2>&1 ||
    { cat "$work/bench.out" >&2; fail "vgpu-bench against $daemon"; }
log "PASS vgpu-bench --smoke: $(grep -c '^RESULT' "$work/bench.out") scenario results"

log "the installed daemon socket-activated, as vgpu@vm1.socket starts it"
runtime="$work/run"
mkdir -p "$runtime"
systemd-socket-activate -l "$runtime/vm1.sock" \
    "$daemon" --admin-socket "$runtime/vm1.admin" > "$work/activated.log" 2>&1 &
pids+=($!)
"$bench" --smoke --backends-only --scenario 2d-cycle --scenario blob-cycle \
    --socket "$runtime/vm1.sock" > "$work/bench2.out" 2>&1 ||
    { cat "$work/bench2.out" "$work/activated.log" >&2; fail "vgpu-bench over socket activation"; }
grep -q "socket activation" "$work/activated.log" ||
    { cat "$work/activated.log" >&2; fail "the daemon did not take the activated socket"; }
log "PASS socket activation: served $(grep -c '^RESULT' "$work/bench2.out") scenario results"

VGPU_RUNTIME_DIR="$runtime" "$ctl" --all stats > "$work/stats.out" ||
    fail "vgpuctl --all stats"
grep -q "^.*vm1" "$work/stats.out" || { cat "$work/stats.out" >&2; fail "vgpuctl --all lists no vm1"; }
VGPU_RUNTIME_DIR="$runtime" "$ctl" --all metrics --textfile "$work/vgpu.prom" ||
    fail "vgpuctl --all metrics --textfile"
grep -q '^vgpu_daemon_up{daemon="vm1"} 1$' "$work/vgpu.prom" ||
    { cat "$work/vgpu.prom" >&2; fail "no vgpu_daemon_up for vm1 in the textfile"; }
grep -q '^vgpu_objects{daemon="vm1"} ' "$work/vgpu.prom" || fail "no vgpu_objects for vm1"
log "PASS vgpuctl --all stats and metrics --textfile ($(wc -l < "$work/vgpu.prom") lines)"
log "all passed"
