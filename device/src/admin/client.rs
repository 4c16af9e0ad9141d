//! A client of the admin socket, for `vgpuctl` and tests: one request
//! line out, one reply line back, with errors that say what to do.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::protocol::{Reply, Request};

/// How long a request waits for its reply by default (an `evict` of a
/// full device region or a `shrink` of many GiB takes seconds, not
/// minutes).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a request did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No socket there.
    #[error("no vgpu admin socket at {0} (is vhost-user-vgpu running? it listens on <socket-path>.admin unless --admin-socket says otherwise)")]
    NoSocket(PathBuf),
    /// A socket file, but no daemon behind it.
    #[error("nothing answers at {0}: the daemon that created it is gone")]
    Stale(PathBuf),
    /// Not allowed to connect.
    #[error("permission denied on {0}: run as root or as the daemon's user")]
    Denied(PathBuf),
    /// Talking failed.
    #[error("talking to the daemon at {path} failed: {source}")]
    Io {
        /// Socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No reply in time.
    #[error("the daemon at {path} did not answer within {timeout:?}: it is busy or stuck (its log says which)")]
    NoReply {
        /// Socket path.
        path: PathBuf,
        /// How long the client waited.
        timeout: Duration,
    },
    /// The daemon answered with an error.
    #[error("{0}")]
    Refused(String),
    /// The reply was not what the protocol says.
    #[error("unexpected reply from the daemon: {0}")]
    Protocol(String),
}

/// A connection to the admin socket.
#[derive(Debug)]
pub struct AdminClient {
    path: PathBuf,
    timeout: Duration,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl AdminClient {
    /// Connects; each request waits [`REPLY_TIMEOUT`] at most.
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        Self::connect_with_timeout(path, REPLY_TIMEOUT)
    }

    /// Connects; each request waits `timeout` at most for its reply.
    pub fn connect_with_timeout(path: &Path, timeout: Duration) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ClientError::NoSocket(path.to_path_buf()),
            io::ErrorKind::ConnectionRefused => ClientError::Stale(path.to_path_buf()),
            io::ErrorKind::PermissionDenied => ClientError::Denied(path.to_path_buf()),
            _ => ClientError::Io {
                path: path.to_path_buf(),
                source: e,
            },
        })?;
        let io_err = |source| ClientError::Io {
            path: path.to_path_buf(),
            source,
        };
        stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
        let writer = stream.try_clone().map_err(io_err)?;
        Ok(Self {
            path: path.to_path_buf(),
            timeout,
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends one raw line (a newline is appended) and reads the reply.
    pub fn raw(&mut self, line: &[u8]) -> Result<Reply, ClientError> {
        let io_err = |source| ClientError::Io {
            path: self.path.clone(),
            source,
        };
        let mut out = line.to_vec();
        out.push(b'\n');
        if let Err(e) = self.writer.write_all(&out) {
            // A refused client is told why before the daemon hangs up:
            // read that reply rather than report the broken pipe.
            if !matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) {
                return Err(io_err(e));
            }
        }
        let mut reply = String::new();
        let n = self.reader.read_line(&mut reply).map_err(|source| {
            match source.kind() {
                // What a read timeout looks like on a unix socket.
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::NoReply {
                    path: self.path.clone(),
                    timeout: self.timeout,
                },
                _ => ClientError::Io {
                    path: self.path.clone(),
                    source,
                },
            }
        })?;
        if n == 0 {
            return Err(ClientError::Protocol(
                "the daemon closed the connection".into(),
            ));
        }
        serde_json::from_str(&reply).map_err(|e| ClientError::Protocol(format!("{e}: {reply:?}")))
    }

    /// Sends a request; the reply's value, or the daemon's error.
    pub fn request(&mut self, request: &Request) -> Result<serde_json::Value, ClientError> {
        let line = serde_json::to_vec(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let reply = self.raw(&line)?;
        match (reply.ok, reply.reply, reply.error) {
            (true, Some(v), _) => Ok(v),
            (false, _, Some(e)) => Err(ClientError::Refused(e)),
            _ => Err(ClientError::Protocol(
                "a reply with neither a result nor an error".into(),
            )),
        }
    }

    /// Sends a request and decodes the reply as `T`.
    pub fn call<T: DeserializeOwned>(&mut self, request: &Request) -> Result<T, ClientError> {
        let v = self.request(request)?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}
