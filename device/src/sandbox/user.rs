//! `--user`/`--group`: a daemon started as root (by libvirt, a unit, an
//! admin's shell) becomes an unprivileged user first thing — before any
//! thread, socket or file — so everything it creates is that user's and
//! nothing it does afterwards runs as root.
//!
//! The user's supplementary groups come from the group database (as
//! `initgroups(3)` sets them: membership of `render` gives the render
//! node). The group defaults to the user's primary group.
//!
//! Owns: name lookups and the switch. Must not: run once a thread exists
//! (the switch is made with per-thread system calls).

use std::ffi::{CStr, CString};

/// Who to become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// The user's name, for the log.
    pub name: String,
}

/// Looks `user` (a name or a number) and `group` (likewise; default: the
/// user's primary group) up.
pub fn resolve(user: &str, group: Option<&str>) -> Result<Identity, String> {
    let (uid, primary, name) = match lookup_user(user)? {
        Some(u) => u,
        None => match user.parse::<u32>() {
            Ok(uid) => (uid, uid, user.to_string()),
            Err(_) => return Err(format!("--user {user}: no such user")),
        },
    };
    let gid = match group {
        None => primary,
        Some(g) => match lookup_group(g)? {
            Some(gid) => gid,
            None => g
                .parse()
                .map_err(|_| format!("--group {g}: no such group"))?,
        },
    };
    let mut groups = supplementary_groups(&name, gid);
    if !groups.contains(&gid) {
        groups.push(gid);
    }
    Ok(Identity {
        uid,
        gid,
        groups,
        name,
    })
}

/// Becomes `who`: supplementary groups, then the group, then the user
/// (real, effective and saved), and checks it cannot go back.
pub fn switch_to(who: &Identity) -> Result<(), String> {
    use rustix::process::{Gid, Uid};
    use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};
    let groups: Vec<Gid> = who.groups.iter().map(|&g| Gid::from_raw(g)).collect();
    set_thread_groups(&groups).map_err(|e| format!("setting the groups of {}: {e}", who.name))?;
    let gid = Gid::from_raw(who.gid);
    set_thread_res_gid(gid, gid, gid).map_err(|e| format!("becoming group {}: {e}", who.gid))?;
    let uid = Uid::from_raw(who.uid);
    set_thread_res_uid(uid, uid, uid).map_err(|e| format!("becoming user {}: {e}", who.name))?;
    if who.uid != 0 && set_thread_res_uid(Uid::ROOT, Uid::ROOT, Uid::ROOT).is_ok() {
        return Err(format!(
            "still able to become root after switching to {}",
            who.name
        ));
    }
    Ok(())
}

const BUF: usize = 16 << 10;

/// `(uid, primary gid, name)` of a user name, from the user database.
fn lookup_user(user: &str) -> Result<Option<(u32, u32, String)>, String> {
    let name = CString::new(user).map_err(|_| format!("--user {user:?}: not a name"))?;
    // SAFETY: `passwd` is plain old data (integers and pointers); all-zero
    // (null pointers) is a valid value, overwritten by getpwnam_r.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; BUF];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: `name` is a C string,
    // `pw` and `out` are ours, `buf` is BUF bytes; the strings the entry
    // points to live in `buf`, read below while `buf` is alive.
    let rc = unsafe { libc::getpwnam_r(name.as_ptr(), &mut pw, buf.as_mut_ptr(), BUF, &mut out) };
    if rc != 0 {
        return Err(format!("looking up user {user}: error {rc}"));
    }
    if out.is_null() {
        return Ok(None);
    }
    // SAFETY: `pw_name` points into `buf` (see above), NUL-terminated.
    let name = unsafe { CStr::from_ptr(pw.pw_name) }
        .to_string_lossy()
        .into_owned();
    Ok(Some((pw.pw_uid, pw.pw_gid, name)))
}

/// The gid of a group name, from the group database.
fn lookup_group(group: &str) -> Result<Option<u32>, String> {
    let name = CString::new(group).map_err(|_| format!("--group {group:?}: not a name"))?;
    // SAFETY: `group` is plain old data; all-zero is a valid value.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; BUF];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `lookup_user`.
    let rc = unsafe { libc::getgrnam_r(name.as_ptr(), &mut gr, buf.as_mut_ptr(), BUF, &mut out) };
    if rc != 0 {
        return Err(format!("looking up group {group}: error {rc}"));
    }
    Ok((!out.is_null()).then_some(gr.gr_gid))
}

/// The groups `user` belongs to (with `gid`), as `initgroups(3)` finds
/// them; just `gid` if the user has no database entry.
fn supplementary_groups(user: &str, gid: u32) -> Vec<u32> {
    let Ok(name) = CString::new(user) else {
        return vec![gid];
    };
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut n = groups.len() as libc::c_int;
    // SAFETY: `groups` has room for `n` entries; getgrouplist writes at
    // most `n` and sets `n` to how many there are.
    let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
    if rc < 0 {
        return vec![gid];
    }
    groups.truncate(usize::try_from(n).unwrap_or(0));
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_resolve() {
        let root = resolve("root", None).unwrap();
        assert_eq!((root.uid, root.gid, root.name.as_str()), (0, 0, "root"));
        assert!(root.groups.contains(&0));
        let by_number = resolve("4242", Some("4343")).unwrap();
        assert_eq!((by_number.uid, by_number.gid), (4242, 4343));
        assert!(resolve("no-such-user-vgpu", None)
            .unwrap_err()
            .contains("no such user"));
        assert!(resolve("root", Some("no-such-group-vgpu"))
            .unwrap_err()
            .contains("no such group"));
    }
}
