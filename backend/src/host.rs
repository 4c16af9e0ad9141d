//! Host limits the buffer manager depends on.

use std::io;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raises this process's open-file limit to its hard limit and returns the
/// new soft limit. Every populated system-memory object holds a memfd, so a
/// daemon serving many objects needs more than the usual 1024.
pub fn raise_fd_limit() -> io::Result<u64> {
    let limit = getrlimit(Resource::Nofile);
    let wanted = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, wanted)?;
    Ok(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fd_limit_can_be_raised_to_the_hard_limit() {
        let soft = super::raise_fd_limit().unwrap();
        assert!(soft >= 1024);
    }
}
