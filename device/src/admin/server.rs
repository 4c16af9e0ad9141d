//! The admin socket server: a unix socket (mode 0600) whose clients must
//! be root or the daemon's own uid (checked with SO_PEERCRED; in a private
//! user namespace root shows as the overflow uid), one thread accepting
//! and one short-lived thread per client.
//!
//! Threads and locks: the accept thread owns the listener; each client
//! thread owns its stream and calls the [`AdminHandler`], which holds no
//! lock between requests. A slow or hostile client only ties up its own
//! thread (bounded by [`MAX_CLIENTS`] and an idle timeout); a panic while
//! answering is caught and answered as an error.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};

use super::handler::AdminHandler;
use super::protocol::{Reply, MAX_REQUEST_LINE};

/// Most clients served at once.
pub const MAX_CLIENTS: usize = 16;
/// A client that sends nothing for this long is disconnected.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Creates a unix socket at `path` that only its owner can connect to
/// (bound under a temporary name, chmod 0600, renamed into place). A stale
/// socket is replaced; a live one (another daemon answering) is an error.
pub fn bind_private(path: &Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("another daemon is answering on {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the admin socket path has no file name",
        )
    })?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

/// Whether a peer uid may use the admin socket: root, or the daemon's
/// uid; in a private user namespace also the overflow uid root appears as
/// there (see `sandbox::namespaces`: the 0600 socket admits no one else
/// who is not the daemon's user).
pub fn uid_allowed(uid: u32) -> bool {
    uid_allowed_with(
        uid,
        rustix::process::geteuid().as_raw(),
        crate::sandbox::namespaces::unmapped_peer_uid(),
    )
}

/// [`uid_allowed`] for a daemon running as `own` with `unmapped` the
/// overflow uid of its private user namespace, if it is in one.
pub fn uid_allowed_with(uid: u32, own: u32, unmapped: Option<u32>) -> bool {
    uid == 0 || uid == own || unmapped == Some(uid)
}

/// The running server; stops and removes its socket when dropped.
#[derive(Debug)]
pub struct AdminServer {
    path: Option<PathBuf>,
    wake: Arc<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Serves `listener` with `handler`. `path`, if given, is removed when
    /// the server stops.
    pub fn start(
        listener: UnixListener,
        handler: AdminHandler,
        path: Option<PathBuf>,
    ) -> io::Result<Self> {
        let wake = Arc::new(rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?);
        let stop = wake.clone();
        let thread = std::thread::Builder::new()
            .name("vgpu-admin".into())
            .spawn(move || accept_loop(&listener, &handler, &stop))?;
        Ok(Self {
            path,
            wake,
            thread: Some(thread),
        })
    }

    /// The socket path, if it has one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let _ = rustix::io::write(&*self.wake, &1u64.to_ne_bytes());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn accept_loop(listener: &UnixListener, handler: &AdminHandler, stop: &OwnedFd) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let mut fds = [
            PollFd::new(listener, PollFlags::IN),
            PollFd::new(stop, PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                log::error!("admin socket: poll failed, admin socket closed: {e}");
                return;
            }
        }
        if !fds[1].revents().is_empty() {
            return;
        }
        // Before any client thread starts: they inherit it.
        crate::sandbox::enter(crate::sandbox::ThreadKind::Admin);
        if fds[0].revents().is_empty() {
            continue;
        }
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                log::warn!("admin socket: accept failed: {e}");
                // EMFILE and friends: don't spin.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if let Err(e) = admit(stream, handler, &active) {
            log::warn!("admin socket: {e}");
        }
    }
}

/// Checks the peer, then serves it on its own thread.
fn admit(
    mut stream: UnixStream,
    handler: &AdminHandler,
    active: &Arc<AtomicUsize>,
) -> io::Result<()> {
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let cred = rustix::net::sockopt::socket_peercred(stream.as_fd())?;
    let uid = cred.uid.as_raw();
    if !uid_allowed(uid) {
        let _ = send(
            &mut stream,
            &Reply::error(format!(
                "permission denied: uid {uid} is neither root nor the daemon's user ({})",
                rustix::process::geteuid().as_raw()
            )),
        );
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refused a client with uid {uid} (pid {})",
                cred.pid.as_raw_nonzero()
            ),
        ));
    }
    if active.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
        active.fetch_sub(1, Ordering::AcqRel);
        let _ = send(
            &mut stream,
            &Reply::error(format!(
                "too many admin clients (at most {MAX_CLIENTS} at once)"
            )),
        );
        return Ok(());
    }
    let handler = handler.clone();
    let slot = active.clone();
    let spawned = std::thread::Builder::new()
        .name("vgpu-admin-client".into())
        .spawn(move || {
            if let Err(e) = serve_client(stream, &handler) {
                log::debug!("admin client: {e}");
            }
            slot.fetch_sub(1, Ordering::AcqRel);
        });
    if let Err(e) = spawned {
        active.fetch_sub(1, Ordering::AcqRel);
        return Err(e);
    }
    Ok(())
}

/// What reading one line found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line (in the buffer, newline stripped).
    Complete,
    /// A line longer than the limit, skipped; its length.
    TooLong(usize),
    /// The peer closed the connection.
    End,
}

/// Reads one `\n`-terminated line of at most `limit` bytes into `buf`; a
/// longer line is consumed to its end and reported, so the next line can
/// be read normally.
pub fn read_line_limited<R: BufRead>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<Line> {
    buf.clear();
    let mut total = 0usize;
    let mut overflow = false;
    loop {
        let avail = reader.fill_buf()?;
        if avail.is_empty() {
            return Ok(match (total, overflow) {
                (0, _) => Line::End,
                (n, true) => Line::TooLong(n),
                (_, false) => Line::Complete,
            });
        }
        let (chunk, found) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (avail.len(), false),
        };
        total = total.saturating_add(chunk);
        if !overflow && buf.len() + chunk <= limit {
            buf.extend_from_slice(&avail[..chunk]);
        } else {
            overflow = true;
            buf.clear();
        }
        reader.consume(chunk + usize::from(found));
        if found {
            return Ok(if overflow {
                Line::TooLong(total)
            } else {
                Line::Complete
            });
        }
    }
}

fn send(stream: &mut UnixStream, reply: &Reply) -> io::Result<()> {
    let mut text = serde_json::to_string(reply)
        .unwrap_or_else(|_| r#"{"ok":false,"error":"encoding the reply failed"}"#.to_string());
    text.push('\n');
    stream.write_all(text.as_bytes())
}

fn serve_client(stream: UnixStream, handler: &AdminHandler) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        let reply = match read_line_limited(&mut reader, &mut line, MAX_REQUEST_LINE)? {
            Line::End => return Ok(()),
            Line::TooLong(n) => Reply::error(format!(
                "request line of {n} bytes is longer than the {MAX_REQUEST_LINE}-byte limit"
            )),
            Line::Complete if line.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Complete => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                handler.handle_line(&line)
            }))
            .unwrap_or_else(|_| {
                Reply::error("internal error while answering (logged); the daemon keeps serving")
            }),
        };
        send(&mut writer, &reply)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_skipped_and_the_next_line_still_reads() {
        let data = format!("{}\nshort\nlast", "x".repeat(100));
        let mut r = BufReader::with_capacity(7, data.as_bytes());
        let mut buf = Vec::new();
        assert_eq!(
            read_line_limited(&mut r, &mut buf, 10).unwrap(),
            Line::TooLong(100)
        );
        assert_eq!(
            read_line_limited(&mut r, &mut buf, 10).unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"short");
        assert_eq!(
            read_line_limited(&mut r, &mut buf, 10).unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"last");
        assert_eq!(read_line_limited(&mut r, &mut buf, 10).unwrap(), Line::End);
        let mut r = BufReader::new(&b"0123456789\n"[..]);
        assert_eq!(
            read_line_limited(&mut r, &mut buf, 10).unwrap(),
            Line::Complete,
            "exactly the limit"
        );
    }

    #[test]
    fn the_socket_is_private_and_a_live_one_is_not_stolen() {
        let dir = std::env::temp_dir().join(format!("vgpu-admin-bind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.sock");
        let l = bind_private(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = bind_private(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(l);
        // Stale now: replaced.
        let _l = bind_private(&path).unwrap();
        let file = dir.join("plain");
        std::fs::write(&file, b"").unwrap();
        assert!(
            bind_private(&file).is_err(),
            "a regular file is not replaced"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn in_a_private_user_namespace_the_overflow_uid_is_root() {
        assert!(!uid_allowed_with(65534, 1000, None));
        assert!(uid_allowed_with(65534, 1000, Some(65534)));
        assert!(!uid_allowed_with(1001, 1000, Some(65534)));
        assert!(uid_allowed_with(1000, 1000, Some(65534)));
        assert!(uid_allowed_with(0, 1000, None));
    }

    #[test]
    fn only_root_and_the_own_uid_are_allowed() {
        assert!(uid_allowed(0));
        assert!(uid_allowed(rustix::process::geteuid().as_raw()));
        let other = if rustix::process::geteuid().as_raw() == 65534 {
            65533
        } else {
            65534
        };
        assert!(!uid_allowed(other));
    }
}
