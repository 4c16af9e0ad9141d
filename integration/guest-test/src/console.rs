//! Talking to the host over the serial console: print a marker line and
//! wait (bounded) for the host's answer line on standard input.

use std::io::{self, Write};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};

/// Prints `marker` and waits up to `timeout` for a line from the host.
pub fn ask(marker: &str, timeout: Duration) -> io::Result<Option<String>> {
    println!("{marker}");
    io::stdout().flush()?;
    let stdin = io::stdin();
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    let ts = Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: 0,
    };
    if rustix::event::poll(&mut fds, Some(&ts))? == 0 {
        return Ok(None);
    }
    let mut line = String::new();
    stdin.read_line(&mut line)?;
    Ok(Some(line.trim().to_string()))
}
