//! A real PostgreSQL server for the tests: the one `WEIR_TEST_PG_URL` names
//! (CI starts one and sets it, e.g. `postgres://weir:weir@127.0.0.1:5433/weir_test`;
//! the user must be allowed to create databases), else a throwaway cluster this
//! helper starts on 127.0.0.1 from Debian's `postgresql` package (as the
//! `postgres` user when running as root) and stops when the test binary exits.
//! Neither: the test panics when `CI` is set, else prints a note and skips.
//!
//! Each test gets a database of its own ([`database`]), so tests run in parallel.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use weir_host::runtime::{PostgresGrant, Secret};

/// The password of the throwaway cluster's superuser.
const LOCAL_PASSWORD: &str = "weir-test-pw-7c1f";

/// A server the tests may use.
pub struct Server {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// A database to connect to for administration.
    pub admin_db: String,
}

/// A database of one test.
pub struct TestDb {
    pub name: String,
    pub server: &'static Server,
}

impl TestDb {
    /// The grant that reaches this database.
    pub fn grant(&self) -> PostgresGrant {
        PostgresGrant {
            host: self.server.host.clone(),
            port: self.server.port,
            dbname: self.name.clone(),
            user: self.server.user.clone(),
            password: Some(Secret::new(self.server.password.clone())),
        }
    }

    /// A direct client (for setting up and checking, not through weir).
    pub fn client(&self) -> postgres::Client {
        self.server.client(&self.name)
    }

    pub fn exec(&self, sql: &str) {
        self.client()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub fn count(&self, table: &str) -> i64 {
        self.client()
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .unwrap()
            .get(0)
    }
}

impl Server {
    pub fn client(&self, db: &str) -> postgres::Client {
        postgres::Config::new()
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(db)
            .connect_timeout(Duration::from_secs(10))
            .connect(postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to test database {db}: {e}"))
    }
}

/// A fresh database named after the test (dropped first if it exists), or
/// `None` when no server is available outside CI.
pub fn database(test: &str) -> Option<TestDb> {
    let server = server()?;
    let name = format!("weir_t_{test}");
    let mut admin = server.client(&server.admin_db);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    Some(TestDb { name, server })
}

fn server() -> Option<&'static Server> {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    match SERVER.get_or_init(|| match std::env::var("WEIR_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => from_url(&url),
        _ => start_local(),
    }) {
        Ok(s) => Some(s),
        Err(reason) if std::env::var_os("CI").is_some() => {
            panic!("no PostgreSQL server for the tests: {reason}")
        }
        Err(reason) => {
            eprintln!(
                "note: skipping a PostgreSQL test: {reason} (set WEIR_TEST_PG_URL or install the `postgresql` package)"
            );
            None
        }
    }
}

fn from_url(url: &str) -> Result<Server, String> {
    let config: postgres::Config = url.parse().map_err(|e| format!("WEIR_TEST_PG_URL: {e}"))?;
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        _ => return Err("WEIR_TEST_PG_URL: name a TCP host".into()),
    };
    Ok(Server {
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        user: config.get_user().unwrap_or("postgres").to_owned(),
        password: config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default(),
        admin_db: config.get_dbname().unwrap_or("postgres").to_owned(),
    })
}

/// The throwaway cluster, stopped at exit.
struct Cluster {
    child: Child,
    dir: PathBuf,
}

static CLUSTER: Mutex<Option<Cluster>> = Mutex::new(None);

extern "C" fn stop_cluster() {
    if let Ok(mut guard) = CLUSTER.lock() {
        if let Some(mut c) = guard.take() {
            // SIGINT: PostgreSQL's fast shutdown.
            unsafe { libc::kill(c.child.id() as i32, libc::SIGINT) };
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                if let Ok(Some(_)) = c.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.child.kill();
            let _ = std::fs::remove_dir_all(&c.dir);
        }
    }
}

fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Runs `program` as the `postgres` user when root (PostgreSQL refuses root).
fn command(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_local() -> Result<Server, String> {
    let bin = bin_dir().ok_or("no /usr/lib/postgresql/*/bin/initdb")?;
    let dir = tempfile::Builder::new()
        .prefix("weir-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let data = dir.join("data");
    let pwfile = dir.join("pw");
    std::fs::write(&pwfile, LOCAL_PASSWORD).map_err(|e| e.to_string())?;
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .map_err(|e| e.to_string())?
            .success();
        if !ok {
            return Err("cannot chown the cluster directory to `postgres`".into());
        }
    }
    let out = command(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "weir",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = free_port();
    let child = command(&bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(&dir)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=200",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("postgres: {e}"))?;
    *CLUSTER.lock().unwrap() = Some(Cluster {
        child,
        dir: dir.clone(),
    });
    unsafe { libc::atexit(stop_cluster) };
    let server = Server {
        host: "127.0.0.1".into(),
        port,
        user: "weir".into(),
        password: LOCAL_PASSWORD.into(),
        admin_db: "postgres".into(),
    };
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = postgres::Config::new()
            .host("127.0.0.1")
            .port(port)
            .user("weir")
            .password(LOCAL_PASSWORD)
            .dbname("postgres")
            .connect(postgres::NoTls)
            .is_ok();
        if ok {
            return Ok(server);
        }
        if let Some(c) = CLUSTER.lock().unwrap().as_mut() {
            if let Ok(Some(status)) = c.child.try_wait() {
                return Err(format!("postgres exited at start: {status}"));
            }
        }
        if Instant::now() > until {
            return Err("postgres did not accept connections within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
