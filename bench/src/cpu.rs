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

/// User and system CPU seconds of a process, from its `/proc/<pid>/stat`, with its name.
fn process_cpu(stat: &str) -> Option<(&str, f64)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1;
    // `rest` starts at the third field (state); utime and stime are the 14th and 15th.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((name, (utime + stime) / TICKS))
}

impl Cpu {
    pub fn now(servers: &[u32]) -> Self {
        let of = |pid: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| process_cpu(&stat).map(|(_, seconds)| seconds))
                .unwrap_or(0.0)
        };
        let postgres = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
            .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
            .filter_map(|stat| {
                process_cpu(&stat)
                    .filter(|(name, _)| *name == "postgres")
                    .map(|(_, s)| s)
            })
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
