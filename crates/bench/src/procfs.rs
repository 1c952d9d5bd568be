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

/// Run-queue delay and context switches of a process's threads: where an echo's tail can come from
/// besides the server's own work (a thread that is runnable but waits for a core, or one more sleep and
/// wakeup per message).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedSample {
    /// Time spent runnable but waiting for a core (the second field of `schedstat`), in nanoseconds.
    pub wait_ns: u64,
    /// Times a thread was put on a core (the third field of `schedstat`).
    pub slices: u64,
    /// Switches because a thread blocked (went to sleep waiting for I/O or a wakeup).
    pub voluntary: u64,
    /// Switches because a thread was preempted while it still had work.
    pub nonvoluntary: u64,
}

/// `(on-CPU ns, run-queue wait ns, timeslices)`: the three fields of /proc/<pid>/task/<tid>/schedstat.
pub fn parse_schedstat(schedstat: &str) -> Option<(u64, u64, u64)> {
    let mut fields = schedstat.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some((fields.next()??, fields.next()??, fields.next()??))
}

/// `(voluntary, nonvoluntary)` context switches from the text of /proc/<pid>/task/<tid>/status.
pub fn parse_ctxt_switches(status: &str) -> Option<(u64, u64)> {
    let field =
        |name: &str| -> Option<u64> { status.lines().find_map(|line| line.strip_prefix(name)?.trim().parse().ok()) };
    Some((field("voluntary_ctxt_switches:")?, field("nonvoluntary_ctxt_switches:")?))
}

impl SchedSample {
    /// The sum over the living threads of `pid` (threads that exit in between are missed; the servers'
    /// worker threads live as long as the process).
    pub fn take(pid: u32) -> Option<Self> {
        let tasks = std::fs::read_dir(PathBuf::from(format!("/proc/{pid}/task"))).ok()?;
        let mut sum = SchedSample::default();
        let mut any = false;
        for task in tasks.flatten() {
            let path = task.path();
            let sched = std::fs::read_to_string(path.join("schedstat")).ok().and_then(|t| parse_schedstat(&t));
            let switches = std::fs::read_to_string(path.join("status")).ok().and_then(|t| parse_ctxt_switches(&t));
            if let (Some((_, wait, slices)), Some((voluntary, nonvoluntary))) = (sched, switches) {
                sum.wait_ns = sum.wait_ns.saturating_add(wait);
                sum.slices = sum.slices.saturating_add(slices);
                sum.voluntary = sum.voluntary.saturating_add(voluntary);
                sum.nonvoluntary = sum.nonvoluntary.saturating_add(nonvoluntary);
                any = true;
            }
        }
        any.then_some(sum)
    }

    /// What happened since `earlier` (a thread gone in between can only make a figure smaller, never
    /// negative).
    pub fn since(&self, earlier: &SchedSample) -> SchedSample {
        SchedSample {
            wait_ns: self.wait_ns.saturating_sub(earlier.wait_ns),
            slices: self.slices.saturating_sub(earlier.slices),
            voluntary: self.voluntary.saturating_sub(earlier.voluntary),
            nonvoluntary: self.nonvoluntary.saturating_sub(earlier.nonvoluntary),
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
    fn reads_scheduler_figures() {
        assert_eq!(parse_schedstat("182512 146027 2\n"), Some((182_512, 146_027, 2)));
        assert_eq!(parse_schedstat("182512 x 2"), None);
        assert_eq!(parse_schedstat("1 2"), None);
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(parse_ctxt_switches(status), Some((120, 7)));
        assert_eq!(parse_ctxt_switches("voluntary_ctxt_switches:\t1\n"), None);
        let (a, b) = (
            SchedSample { wait_ns: 10, slices: 5, voluntary: 3, nonvoluntary: 1 },
            SchedSample { wait_ns: 25, slices: 9, voluntary: 4, nonvoluntary: 1 },
        );
        assert_eq!(b.since(&a), SchedSample { wait_ns: 15, slices: 4, voluntary: 1, nonvoluntary: 0 });
        assert_eq!(a.since(&b), SchedSample::default());
    }

    #[test]
    fn reads_this_process() {
        let sched = SchedSample::take(std::process::id()).unwrap();
        assert!(sched.slices > 0 && sched.voluntary + sched.nonvoluntary > 0);
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 0);
        assert!(stat_cpu_ns(pid).is_some());
    }
}
