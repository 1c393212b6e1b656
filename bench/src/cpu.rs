//! CPU time of the processes under test, from `/proc`.

use std::time::Instant;

/// Clock ticks per second of the CPU times in `/proc` (`USER_HZ`, 100 on Linux).
const TICKS: f64 = 100.0;

/// CPU seconds used (from `/proc`; zeros where it cannot be read): by the server processes, by
/// PostgreSQL's processes, by this benchmark (writers and subscribers), and by the whole machine;
/// so far, or over `seconds`.
#[derive(Clone, Copy, Debug)]
pub struct Cpu {
    /// The server processes.
    pub server: f64,
    /// PostgreSQL's processes.
    pub postgres: f64,
    /// This benchmark.
    pub bench: f64,
    /// The whole machine.
    pub machine: f64,
    at: Instant,
    /// The period measured (0 for a reading so far).
    pub seconds: f64,
}

/// CPU seconds of a process, from its `/proc/<pid>/stat`, with its name: its own (user and
/// system), and that of its children it has waited for.
fn process_cpu(stat: &str) -> Option<(&str, f64, f64)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1;
    // `rest` starts at the third field (state); utime, stime, cutime and cstime are the 14th to
    // the 17th.
    let mut fields = rest.split_whitespace().skip(11);
    let mut next = || fields.next()?.parse::<f64>().ok();
    let own = next()? + next()?;
    let children = next()? + next()?;
    Some((name, own / TICKS, children / TICKS))
}

/// The CPU seconds a process's `stat` line counts for PostgreSQL: a `postgres` process's own and
/// its waited-for children's; none for another process. A backend that exits leaves the sum of
/// live processes, and its time goes to the postmaster's children's when the postmaster reaps it;
/// so a connection that closes during a period does not take its CPU out of the period's figure.
fn postgres_seconds(stat: &str) -> f64 {
    process_cpu(stat)
        .filter(|(name, _, _)| *name == "postgres")
        .map_or(0.0, |(_, own, children)| own + children)
}

impl Cpu {
    pub fn now(servers: &[u32]) -> Self {
        let of = |pid: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| process_cpu(&stat).map(|(_, own, _)| own))
                .unwrap_or(0.0)
        };
        let postgres = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
            .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
            .map(|stat| postgres_seconds(&stat))
            .sum();
        // The first line of /proc/stat: user nice system idle iowait irq softirq steal …
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| {
                let line = stat.lines().next()?.strip_prefix("cpu ")?.to_string();
                let t: Vec<f64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
                Some([0, 1, 2, 5, 6, 7].iter().filter_map(|&i| t.get(i)).sum::<f64>() / TICKS)
            })
            .unwrap_or(0.0);
        Self {
            server: servers.iter().map(|pid| of(&pid.to_string())).sum(),
            postgres,
            bench: of("self"),
            machine,
            at: Instant::now(),
            seconds: 0.0,
        }
    }

    /// The CPU used from `before` to now.
    pub fn since(before: Self, servers: &[u32]) -> Self {
        let now = Self::now(servers);
        Self {
            server: now.server - before.server,
            postgres: now.postgres - before.postgres,
            bench: now.bench - before.bench,
            machine: now.machine - before.machine,
            at: now.at,
            seconds: (now.at - before.at).as_secs_f64(),
        }
    }

    /// The share of all cores that other processes used over the period.
    pub fn others(&self) -> f64 {
        let cores = cores().unwrap_or(1) as f64;
        let others = self.machine - self.server - self.postgres - self.bench;
        (others / (self.seconds * cores).max(f64::EPSILON)).max(0.0)
    }
}

/// The cores this process may run on (the server, PostgreSQL and the load generator share them);
/// `None` when the system does not say.
pub fn cores() -> Option<usize> {
    std::thread::available_parallelism().ok().map(|n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `stat` line with the name `name`, utime, stime, cutime and cstime in ticks.
    fn stat(pid: u32, name: &str, times: [u64; 4]) -> String {
        let [utime, stime, cutime, cstime] = times;
        format!(
            "{pid} ({name}) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 1 0 5 1000 10"
        )
    }

    #[test]
    fn a_backend_that_exits_keeps_its_cpu_in_postgres_figure() {
        let postmaster = stat(10, "postgres", [100, 50, 0, 0]);
        let backend = stat(11, "postgres", [300, 100, 0, 0]);
        let other = stat(12, "auditgraph", [999, 999, 999, 999]);
        let sum = |stats: &[&String]| stats.iter().map(|stat| postgres_seconds(stat)).sum::<f64>();
        let before = sum(&[&postmaster, &backend, &other]);
        assert!((before - 5.5).abs() < 1e-9, "{before}");
        // The backend ran 1 s more, exited, and the postmaster reaped it.
        let reaped = stat(10, "postgres", [100, 50, 350, 150]);
        let after = sum(&[&reaped, &other]);
        assert!((after - before - 1.0).abs() < 1e-9, "{before} then {after}");
    }

    #[test]
    fn a_name_with_spaces_and_parentheses_is_read_whole() {
        let line = stat(7, "tokio (rt) worker", [10, 20, 30, 40]);
        assert_eq!(process_cpu(&line), Some(("tokio (rt) worker", 0.3, 0.7)));
    }
}
