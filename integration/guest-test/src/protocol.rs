//! The lines guest and host exchange over the serial console. The guest
//! prints a marker and waits (bounded) for the host's answer line.

/// Printed by the guest once the pattern is on screen, followed by
/// ` WIDTHxHEIGHT`; the host takes a screendump, then answers any line.
pub const SCREEN_READY: &str = "vgpu-guest: SCREEN READY";

/// Printed by the guest once a blob written through its mapping is the
/// scanout (SET_SCANOUT_BLOB), followed by ` WIDTHxHEIGHT`: the host checks
/// the mirrored bars on screen and answers `ok` or `bad: REASON`.
pub const BLOB_SCREEN_READY: &str = "vgpu-guest: BLOB SCREEN READY";

/// Printed by the guest when a DONTNEED blob waits for the host to purge
/// it; the host purges through the admin socket and answers
/// `purged BYTES` (or `purge unavailable: REASON`).
pub const PURGE_REQUEST: &str = "vgpu-guest: PURGE REQUEST";

/// Printed by the guest (benchmark boots) just before a timed loop starts,
/// followed by ` NAME`: the host samples its processes' CPU time.
pub const LOOP_START: &str = "vgpu-guest: LOOP START";

/// Printed by the guest when every subtest has run, followed by
/// ` N passed, N failed, N skipped`.
pub const DONE: &str = "vgpu-guest: DONE";

/// The subtest result lines: `PASS name: detail` and so on.
pub const RESULT_PREFIXES: [&str; 3] = ["PASS ", "FAIL ", "SKIP "];
