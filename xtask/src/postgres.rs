//! A throwaway PostgreSQL server for tests and benchmarks, from the
//! machine's own binaries (`initdb`, `pg_ctl`, `postgres`).
//!
//! - Data and socket directories in a fresh temp directory; the server
//!   listens on 127.0.0.1 on a free port and on a socket directory of its own.
//! - As root, every server command runs as the unprivileged `postgres`
//!   user (`runuser -u postgres --`; PostgreSQL refuses to run as root) and
//!   the temp directory is chowned to it.
//! - `pg_hba.conf` asks for `scram-sha-256` on every connection (no
//!   `trust`), for a superuser role with a random password, so login
//!   failures in tests mean something.
//! - [`TestPostgres`] stops the server by the PID in `postmaster.pid` when
//!   dropped (SIGINT: fast shutdown; SIGKILL if it does not stop) and
//!   removes the directory, whether the tests passed or not.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use crate::Result;

/// Superuser role of the throwaway server.
const ROLE: &str = "rotation_test";

/// A running throwaway server; dropping it stops the server and removes its files.
pub(crate) struct TestPostgres {
    dir: PathBuf,
    pid: Option<u32>,
    url: String,
    /// The `runuser -u postgres --` prefix when running as root.
    as_user: Option<&'static str>,
}

/// How the server is tuned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// `fsync = off` and asynchronous commit: fast, for tests (the cluster
    /// is thrown away).
    Throwaway,
    /// PostgreSQL's defaults (fsync, synchronous commit): for benchmarks.
    Durable,
}

impl TestPostgres {
    /// `postgres://rotation_test:<password>@127.0.0.1:<port>/postgres`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The URL with its password replaced by `***`, for messages.
    pub(crate) fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// Initialises a cluster in a temp directory and starts it.
    pub(crate) fn start(durability: Durability) -> Result<TestPostgres> {
        let bin = find_binaries()?;
        let as_user = if is_root() {
            if !succeeds(Command::new("id").args(["-u", "postgres"])) {
                return Err(
                    "running as root, but there is no `postgres` user to run PostgreSQL as; \
                            install PostgreSQL with `apt-get install postgresql` (which creates it) \
                            or run as an unprivileged user"
                        .into(),
                );
            }
            Some("postgres")
        } else {
            None
        };

        let dir = std::env::temp_dir().join(format!(
            "rotation-xtask-pg-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let mut server = TestPostgres {
            dir: dir.clone(),
            pid: None,
            url: String::new(),
            as_user,
        };
        let data = dir.join("data");
        let socket = dir.join("socket");
        for d in [&dir, &socket] {
            std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        set_mode(&dir, 0o700)?;
        let password = random_hex(16)?;
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).map_err(|e| format!("cannot write the password file: {e}"))?;
        set_mode(&pwfile, 0o600)?;
        if let Some(user) = as_user {
            let mut chown = Command::new("chown");
            chown.arg("-R").arg(format!("{user}:")).arg(&dir);
            check("chown the PostgreSQL directory", chown)?;
        }

        let mut initdb = server.command(&bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", ROLE, "-E", "UTF8", "--locale=C", "--auth=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()));
        check("initdb", initdb)?;
        let _ = std::fs::remove_file(&pwfile);
        // Password-checked everywhere, whatever initdb's defaults are. The
        // file is rewritten in place, so it keeps its owner.
        std::fs::write(
            data.join("pg_hba.conf"),
            "# rotation xtask: throwaway test cluster, passwords checked on every connection\n\
             local all all scram-sha-256\n\
             host  all all 127.0.0.1/32 scram-sha-256\n\
             host  all all ::1/128 scram-sha-256\n",
        )
        .map_err(|e| format!("cannot write pg_hba.conf: {e}"))?;

        let port = free_port()?;
        let mut settings = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='{}' \
             -c max_connections=300 -c password_encryption=scram-sha-256",
            socket.display()
        );
        if durability == Durability::Throwaway {
            settings.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let log = dir.join("server.log");
        let mut pg_ctl = server.command(&bin.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &settings, "start"]);
        if let Err(e) = check("pg_ctl start", pg_ctl) {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            // Stop whatever may have started before reporting.
            server.pid = read_pid(&data);
            return Err(format!("{e}\nserver log ({}):\n{}", log.display(), tail.join("\n")));
        }
        server.pid = Some(read_pid(&data).ok_or("the server started but postmaster.pid is unreadable")?);
        server.url = format!("postgres://{ROLE}:{password}@127.0.0.1:{port}/postgres");
        Ok(server)
    }

    /// `program`, run as the unprivileged user when we are root.
    fn command(&self, program: &Path) -> Command {
        match self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            // SIGINT is PostgreSQL's "fast" shutdown: roll back, disconnect, stop.
            let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if alive(pid) {
                eprintln!("xtask: PostgreSQL (pid {pid}) did not stop; killing it");
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                std::thread::sleep(Duration::from_millis(200));
            }
            eprintln!("xtask: PostgreSQL (pid {pid}) stopped");
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("xtask: could not remove {}: {e}", self.dir.display());
        }
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: `PG_BIN` if
/// set, the newest `/usr/lib/postgresql/<version>/bin`, or `PATH`.
fn find_binaries() -> Result<PathBuf> {
    let complete = |dir: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|b| dir.join(b).is_file());
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        return if complete(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "PG_BIN={} does not hold initdb, pg_ctl and postgres; install them: apt-get install postgresql",
                dir.display()
            ))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| complete(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if complete(&dir) {
                return Ok(dir);
            }
        }
    }
    Err(
        "the PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found in \
         /usr/lib/postgresql/*/bin or on PATH; install them: apt-get install postgresql \
         (or set DATABASE_URL to use an existing server, or PG_BIN to their directory)"
            .into(),
    )
}

fn is_root() -> bool {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("Uid:"))
    {
        return line.split_whitespace().nth(2) == Some("0");
    }
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn succeeds(command: &mut Command) -> bool {
    command.output().map(|o| o.status.success()).unwrap_or(false)
}

/// Runs `command`, and on failure returns its output in the error.
fn check(step: &str, mut command: Command) -> Result {
    let out = command.output().map_err(|e| format!("{step}: cannot start: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{step} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result {
    Ok(())
}

/// `n` random bytes from the OS, as hex.
pub(crate) fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// The postmaster's PID: the first line of `postmaster.pid`.
fn read_pid(data: &Path) -> Option<u32> {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn alive(pid: u32) -> bool {
    // A zombie is not running; only our children can be zombies, and the
    // postmaster was started by pg_ctl, so it is reaped by init.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false),
    }
}

/// `url` with the password of its user info replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{}***{}", &url[..start + colon + 1], &url[start + at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact("postgres://u:secret@h:1/db"), "postgres://u:***@h:1/db");
        assert_eq!(super::redact("postgres://u@h:1/db"), "postgres://u@h:1/db");
    }
}
