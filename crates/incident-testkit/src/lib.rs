//! Test support, real parts only: a nats-server with JetStream on a free port and its own store
//! directory (stoppable and restartable on the same port and store), free ports, and service
//! processes started from the workspace's built binaries, killable with SIGKILL.

pub mod smtp;
pub mod stream;
pub mod webhook;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Finds the nats-server binary: `NATS_SERVER_BIN`, then PATH, then /usr/sbin and /usr/bin.
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .expect(
            "nats-server not found: run scripts/test.sh (it installs it) or set NATS_SERVER_BIN",
        )
}

/// A real nats-server with JetStream, on a free port, with its store in a temp directory.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    extra: Vec<String>,
}

impl NatsServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With extra command-line arguments (e.g. `--user u --pass p`).
    pub fn start_with(extra: &[&str]) -> Self {
        let store = tempfile::tempdir().expect("temp dir for the JetStream store");
        let mut server = Self {
            child: None,
            port: free_port(),
            store,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        // A free port can be taken between the check and the server's bind (another test's
        // server or an outgoing connection): then the server exits and another port is tried.
        for _ in 0..5 {
            if server.launch() {
                return server;
            }
            server.port = free_port();
        }
        panic!("nats-server did not start on any of five free ports");
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process and waits until it greets on its port; false when it exited first.
    fn launch(&mut self) -> bool {
        let mut child = Command::new(nats_server_bin())
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.store.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if greets(self.port) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "nats-server did not greet on 127.0.0.1:{} within 20 s",
            self.port
        );
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// Kills the server (SIGKILL) and waits for it to go.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        for _ in 0..40 {
            if self.launch() {
                return;
            }
            // the port is still held (e.g. by a closing connection): try again shortly
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("nats-server did not start again on port {}", self.port);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a NATS server answers on the port with its `INFO` greeting (a bare TCP accept could
/// be a connection to itself or another program).
fn greets(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let Ok(conn) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).is_ok() && line.starts_with("INFO ")
}

/// The path of a binary of this workspace, built next to the running test
/// (`cargo build --workspace --bins` builds them; scripts/test.sh does).
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    let mut dir = exe.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        let candidate = d.join(name);
        if candidate.is_file() {
            return candidate;
        }
        dir = d.parent().map(Path::to_path_buf);
        if d.file_name().is_some_and(|n| n == "target") {
            break;
        }
    }
    panic!(
        "binary {name} not built: run `cargo build --workspace --bins` first (scripts/test.sh does)"
    );
}

/// The addresses a service announced on its standard output once listening.
#[derive(Debug, Clone)]
pub struct Listening {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

/// A service process, its announced addresses, and its log file.
pub struct ServiceProcess {
    child: Child,
    pub listening: Listening,
    log: PathBuf,
}

impl ServiceProcess {
    /// Starts `bin` with `GRPC_ADDR`/`HTTP_ADDR` on port 0 plus `env`, and waits (up to 60 s)
    /// for the JSON line `{"listening":{"grpc":..,"http":..}}` it prints on standard output.
    pub fn spawn(bin: &str, env: &[(&str, String)], log: &Path) -> Self {
        let log_file = std::fs::File::create(log).expect("create the service log file");
        let mut cmd = Command::new(bin_path(bin));
        cmd.env("GRPC_ADDR", "127.0.0.1:0")
            .env("HTTP_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the service");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let mut sent = false;
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if !sent && let Some(l) = parse_listening(&line) {
                    let _ = tx.send(l);
                    sent = true;
                }
                line.clear();
            }
        });
        let listening = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let mut text = String::new();
                let _ = std::fs::File::open(log).and_then(|mut f| f.read_to_string(&mut text));
                panic!("{bin} did not announce its addresses; its log:\n{text}");
            }
        };
        Self {
            child,
            listening,
            log: log.to_path_buf(),
        }
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.listening.grpc)
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.listening.http)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `within` for the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits up to `within` for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// What the service logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_listening(line: &str) -> Option<Listening> {
    let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    let l = v.get("listening")?;
    Some(Listening {
        grpc: l.get("grpc")?.as_str()?.parse().ok()?,
        http: l.get("http")?.as_str()?.parse().ok()?,
    })
}
