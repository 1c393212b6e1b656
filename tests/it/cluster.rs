//! PostgreSQL clusters of a test's own: a primary made with `initdb` and standbys cloned from it
//! with `pg_basebackup`, in temporary directories, on free ports. The system's server is not
//! touched. When the binaries are missing the tests that need them skip, unless PostgreSQL is
//! required (CI), where they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The directory of PostgreSQL's programs (`initdb`, `pg_ctl`, `pg_basebackup`), the newest
/// installed.
fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_basebackup").exists())
        .collect();
    found.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop()
}

/// Whether this process runs as root: PostgreSQL refuses to, so its programs then run as the
/// `postgres` user.
fn as_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
    })
}

/// One PostgreSQL server of the test's own.
pub struct Cluster {
    /// Its port on 127.0.0.1.
    pub port: u16,
    data: PathBuf,
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// A new primary, ready for streaming replication, or `None` when PostgreSQL's programs are
    /// not installed (a failure when PostgreSQL is required).
    pub fn primary() -> Option<Self> {
        let Some(bin) = bin_dir() else {
            assert!(
                !crate::helpers::postgres_is_required(),
                "PostgreSQL's programs (initdb, pg_basebackup) are required but not installed"
            );
            eprintln!("skipped: PostgreSQL's programs (initdb, pg_basebackup) are not installed");
            return None;
        };
        let dir = owned_tempdir();
        let data = dir.path().join("primary");
        run(
            &bin,
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let cluster = Self {
            port: free_port(),
            data,
            bin,
            _dir: dir,
        };
        cluster.configure(&[
            ("wal_level", "replica"),
            ("max_wal_senders", "8"),
            ("hot_standby", "on"),
            ("fsync", "off"),
            ("shared_buffers", "32MB"),
            ("max_connections", "200"),
        ]);
        cluster.start();
        Some(cluster)
    }

    /// A streaming standby of this primary, started.
    pub fn standby(&self) -> Self {
        let dir = owned_tempdir();
        let data = dir.path().join("standby");
        self.client(
            "pg_basebackup",
            &[
                "-D",
                path(&data),
                "-R",
                "-X",
                "stream",
                "--no-sync",
                // An immediate checkpoint; the default spreads it over minutes.
                "--checkpoint=fast",
            ],
        );
        let standby = Self {
            port: free_port(),
            data,
            bin: self.bin.clone(),
            _dir: dir,
        };
        standby.configure(&[]);
        standby.start();
        standby
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Writes the server's port and socket directory, and `settings`, into its configuration.
    fn configure(&self, settings: &[(&str, &str)]) {
        use std::io::Write;
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .expect("postgresql.conf");
        let socket_dir = self.data.parent().expect("a parent directory");
        writeln!(conf, "\nport = {}", self.port).unwrap();
        writeln!(conf, "listen_addresses = '127.0.0.1'").unwrap();
        writeln!(conf, "unix_socket_directories = '{}'", socket_dir.display()).unwrap();
        for (name, value) in settings {
            writeln!(conf, "{name} = '{value}'").unwrap();
        }
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) {
        let log = self.data.parent().expect("a parent directory").join("server.log");
        run(
            &self.bin,
            "pg_ctl",
            &["-D", path(&self.data), "-l", path(&log), "-w", "-t", "60", "start"],
        );
    }

    /// Stops the server at once, as a crash would.
    pub fn kill(&self) {
        run(
            &self.bin,
            "pg_ctl",
            &["-D", path(&self.data), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Runs `sql` on `database` with psql and returns what it prints (unaligned, tuples only).
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = self.client("psql", &["-d", database, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs a client `program` of PostgreSQL's against this server with `args`.
    fn client(&self, program: &str, args: &[&str]) -> Output {
        let port = self.port.to_string();
        let mut all = vec!["-h", "127.0.0.1", "-p", &port, "-U", "postgres"];
        all.extend_from_slice(args);
        run(&self.bin, program, &all)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = command(&self.bin, "pg_ctl")
            .args(["-D", path(&self.data), "-m", "immediate", "stop"])
            .output();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A temporary directory the `postgres` user may write in (when the tests run as root).
fn owned_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    give_to_postgres(dir.path());
    dir
}

/// Makes `path` and what it holds the `postgres` user's (when the tests run as root).
fn give_to_postgres(path: &Path) {
    if as_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .expect("chown");
        assert!(status.success(), "chown of {}", path.display());
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .expect("a free port")
        .port()
}

fn command(bin: &Path, program: &str) -> Command {
    as_postgres(&bin.join(program))
}

/// A command running `program` as the `postgres` user when the tests run as root.
fn as_postgres(program: &Path) -> Command {
    if as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Runs one of PostgreSQL's programs; a failure fails the test with its output.
fn run(bin: &Path, program: &str, args: &[&str]) -> Output {
    let out = command(bin, program)
        .args(args)
        .current_dir("/")
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A PgBouncer of the test's own in front of the system's PostgreSQL (`postgres_admin_url`'s
/// server), on a free port, stopped when dropped.
pub struct PgBouncer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl PgBouncer {
    /// Starts one pooling in `mode` (`session`, `transaction`), or `None` when PgBouncer is not
    /// installed (a failure when PostgreSQL is required: CI installs it).
    pub fn start(mode: &str) -> Option<Self> {
        let Some(program) = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
        else {
            assert!(
                !crate::helpers::postgres_is_required(),
                "PgBouncer is required but not installed (apt-get install pgbouncer)"
            );
            eprintln!("skipped: PgBouncer is not installed");
            return None;
        };
        let admin: sea_orm::sqlx::postgres::PgConnectOptions =
            crate::helpers::postgres_admin_url().parse().expect("the admin URL");
        let dir = owned_tempdir();
        let port = free_port();
        let users = dir.path().join("users.txt");
        std::fs::write(&users, format!("\"{}\" \"\"\n", admin.get_username())).unwrap();
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host={} port={}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {}\npool_mode = {mode}\nmax_client_conn = 500\n\
                 default_pool_size = 40\nlogfile = {}\npidfile = {}\n",
                admin.get_host(),
                admin.get_port(),
                users.display(),
                dir.path().join("pgbouncer.log").display(),
                dir.path().join("pgbouncer.pid").display(),
            ),
        )
        .unwrap();
        give_to_postgres(dir.path());
        let out = as_postgres(&program)
            .arg("-d")
            .arg(&ini)
            .output()
            .expect("start pgbouncer");
        assert!(
            out.status.success(),
            "pgbouncer: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "pgbouncer listens"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Some(Self { port, dir })
    }

    /// The URL of `database` through the pooler.
    pub fn url(&self, database: &str) -> String {
        let admin: sea_orm::sqlx::postgres::PgConnectOptions =
            crate::helpers::postgres_admin_url().parse().expect("the admin URL");
        format!("postgres://{}@127.0.0.1:{}/{database}", admin.get_username(), self.port)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("pgbouncer.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}
