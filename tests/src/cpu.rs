//! CPU time of a process tree, for benchmarks that report what a backend
//! spends per operation.

/// CPU time (ns) a process, its threads and its descendants spent so far
/// (`/proc/PID/task/*/schedstat`, nanosecond-exact); 0 once gone.
pub fn tree_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut total = 0;
    for task in tasks.flatten() {
        let path = task.path();
        if let Some(ns) = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            total += ns;
        }
        if let Ok(children) = std::fs::read_to_string(path.join("children")) {
            total += children
                .split_whitespace()
                .filter_map(|c| c.parse().ok())
                .map(tree_cpu_ns)
                .sum::<u64>();
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_of_this_process_grows() {
        let me = std::process::id();
        let before = tree_cpu_ns(me);
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(tree_cpu_ns(me) > before);
        assert_eq!(tree_cpu_ns(u32::MAX), 0);
    }
}
