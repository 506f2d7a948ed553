//! A throwaway PostgreSQL server for the tests: Debian's package (installed by
//! scripts/install-test-deps.sh), initdb'd into a temporary directory and started on
//! a free loopback port.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A throwaway PostgreSQL cluster: initdb'd into a temporary directory, listening on
/// 127.0.0.1 only, with trust authentication for the `vargid` role.
pub struct PgServer {
    root: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl PgServer {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A server that accepts TLS connections only, with `cert_pem` / `key_pem` (signed
    /// for "localhost").
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Self {
        Self::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Self {
        let bin = pg_bin();
        let root =
            std::env::temp_dir().join(format!("vargid-pg-{}-{}", std::process::id(), nanos()));
        std::fs::create_dir_all(&root).expect("temporary directory");
        // PostgreSQL refuses to run as root: the package's `postgres` user runs it then.
        if is_root() {
            run(Command::new("chown").arg("postgres").arg(&root));
        }
        let port = free_port();
        let server = Self { root, bin, port };
        run(server
            .command("initdb")
            .args([
                "-U",
                "vargid",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(server.data()));
        if let Some((cert, key)) = tls {
            let data = server.data();
            std::fs::write(data.join("server.crt"), cert).expect("server.crt");
            std::fs::write(data.join("server.key"), key).expect("server.key");
            // TCP only with TLS: plaintext connections are refused.
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n\
                 hostnossl all all 127.0.0.1/32 reject\n",
            )
            .expect("pg_hba.conf");
            let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).expect("conf");
            conf.push_str(
                "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            );
            std::fs::write(data.join("postgresql.conf"), conf).expect("postgresql.conf");
            if is_root() {
                for file in ["server.crt", "server.key", "pg_hba.conf", "postgresql.conf"] {
                    run(Command::new("chown").arg("postgres").arg(data.join(file)));
                }
            }
            run(Command::new("chmod")
                .arg("600")
                .arg(data.join("server.key")));
        }
        server.pg_ctl("start");
        server
    }

    /// The URL by host name (for TLS, whose certificate names "localhost").
    pub fn url_by_name(&self) -> String {
        format!("postgresql://vargid@localhost:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn url(&self) -> String {
        format!("postgresql://vargid@127.0.0.1:{}/postgres", self.port)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.stdout(Stdio::null());
        cmd
    }

    /// Runs `pg_ctl ACTION` (start, stop, restart) on this cluster, waiting for it.
    pub fn pg_ctl(&self, action: &str) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.port,
            self.root.display()
        );
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.root.join("log"))
            .args(["-w", "-t", "60", "-m", "fast", "-o", &options, action]);
        run(&mut cmd);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data())
            .args(["-w", "-m", "immediate", "stop"]);
        let _ = cmd.stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("VARGID_PG_BIN") {
        return PathBuf::from(dir);
    }
    // Debian keeps the server programs out of PATH, under the major version.
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect(
        "PostgreSQL server programs not found under /usr/lib/postgresql/*/bin: \
         run scripts/install-deps.sh (or set VARGID_PG_BIN)",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("starting a PostgreSQL program");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
