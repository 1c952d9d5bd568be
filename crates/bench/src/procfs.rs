//! Server resource readings from /proc: resident memory and CPU time of a process (all its threads).

use std::path::PathBuf;

/// `VmRSS` from the text of /proc/<pid>/status, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    let multiplier = match fields.next() {
        Some("kB") | Some("KB") => 1024,
        Some("mB") | Some("MB") => 1024 * 1024,
        Some("B") | None => 1,
        Some(_) => return None,
    };
    value.checked_mul(multiplier)
}

/// `utime + stime` (fields 14 and 15, in clock ticks) from the text of /proc/<pid>/stat. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // after_name starts at field 3 (state); utime is field 14, i.e. index 11 here.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// Time spent on a CPU in nanoseconds: the first field of /proc/<pid>/task/<tid>/schedstat.
pub fn parse_schedstat_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// Clock ticks per second for /proc/<pid>/stat times.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// Resident set size of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// CPU time of `pid` (user + system, every thread, living or exited) in nanoseconds, with the 1/CLK_TCK
/// resolution of /proc/<pid>/stat.
pub fn stat_cpu_ns(pid: u32) -> Option<u64> {
    let ticks = parse_stat_cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    Some(ticks.saturating_mul(1_000_000_000) / clock_ticks_per_second())
}

/// CPU time of the living threads of `pid` in nanoseconds, with nanosecond resolution (schedstat).
/// Threads that exited in between are missed, so callers compare it with `stat_cpu_ns`.
pub fn schedstat_cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(PathBuf::from(format!("/proc/{pid}/task"))).ok()?;
    let mut total = 0u64;
    let mut any = false;
    for task in tasks.flatten() {
        let path = task.path().join("schedstat");
        if let Some(ns) = std::fs::read_to_string(path).ok().and_then(|text| parse_schedstat_ns(&text)) {
            total = total.saturating_add(ns);
            any = true;
        }
    }
    any.then_some(total)
}

/// Both CPU readings of a process at one moment.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    pub stat_ns: Option<u64>,
    pub sched_ns: Option<u64>,
}

impl CpuSample {
    pub fn take(pid: u32) -> Self {
        Self { stat_ns: stat_cpu_ns(pid), sched_ns: schedstat_cpu_ns(pid) }
    }

    /// CPU used since `earlier`: the nanosecond schedstat figure when present and consistent with the
    /// coarse stat one (within two ticks, allowing for exited threads), else the stat figure.
    pub fn since(&self, earlier: &CpuSample) -> CpuDelta {
        let stat = match (self.stat_ns, earlier.stat_ns) {
            (Some(now), Some(then)) => Some(now.saturating_sub(then)),
            _ => None,
        };
        let sched = match (self.sched_ns, earlier.sched_ns) {
            (Some(now), Some(then)) => Some(now.saturating_sub(then)),
            _ => None,
        };
        CpuDelta { stat, sched }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct CpuDelta {
    pub stat: Option<u64>,
    pub sched: Option<u64>,
}

impl CpuDelta {
    /// The best figure: schedstat (ns resolution) unless it disagrees with stat by more than the stat
    /// resolution plus 10% (which happens only when threads exited in between).
    pub fn best_ns(&self, ticks_per_second: u64) -> Option<u64> {
        let tick_ns = 1_000_000_000 / ticks_per_second.max(1);
        match (self.sched, self.stat) {
            (Some(sched), Some(stat)) => {
                let tolerance = 2 * tick_ns + stat / 10;
                if sched.abs_diff(stat) <= tolerance {
                    Some(sched)
                } else {
                    Some(stat)
                }
            }
            (Some(sched), None) => Some(sched),
            (None, stat) => stat,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss_in_bytes() {
        let status = "Name:\tnode\nVmPeak:\t  900 kB\nVmRSS:\t   51234 kB\nThreads:\t7\n";
        assert_eq!(parse_vm_rss(status), Some(51234 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
    }

    #[test]
    fn reads_utime_plus_stime_even_with_odd_command_names() {
        // Fields: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
        let stat = "1234 (bench server) (x) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0 100";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        assert_eq!(parse_stat_cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn reads_schedstat_run_time() {
        assert_eq!(parse_schedstat_ns("182512 146027 2\n"), Some(182_512));
        assert_eq!(parse_schedstat_ns(""), None);
    }

    #[test]
    fn prefers_schedstat_when_consistent_with_stat() {
        let delta = CpuDelta { stat: Some(80_000_000), sched: Some(75_123_456) };
        assert_eq!(delta.best_ns(100), Some(75_123_456));
        // A thread that exited took its schedstat with it: trust stat.
        let delta = CpuDelta { stat: Some(900_000_000), sched: Some(300_000_000) };
        assert_eq!(delta.best_ns(100), Some(900_000_000));
        let delta = CpuDelta { stat: None, sched: None };
        assert_eq!(delta.best_ns(100), None);
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 0);
        assert!(stat_cpu_ns(pid).is_some());
    }
}
