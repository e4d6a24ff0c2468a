//! A real `nats-server -js` on a free port with its own JetStream store dir. It can be
//! stopped (to simulate an outage) and restarted on the same port and dir; it is killed on drop.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    port: u16,
    store_dir: tempfile::TempDir,
    child: Option<Child>,
}

/// `KYSO_NATS_SERVER`, else `nats-server` on PATH, else Debian's `/usr/sbin/nats-server`.
fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("KYSO_NATS_SERVER") {
        return path.into();
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| "/usr/sbin/nats-server".into())
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

impl NatsServer {
    /// Starts a server and waits until it accepts clients with JetStream on.
    pub fn start() -> Self {
        let mut server =
            Self { port: free_port(), store_dir: tempfile::tempdir().expect("a temp dir for JetStream"), child: None };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (an outage); its JetStream data stays on disk.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts (again) on the same port and store dir.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.store_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e} (./scripts/test installs it)", binary().display()));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("nats-server exited at start-up with {status}");
            }
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                stream.set_read_timeout(Some(Duration::from_secs(2))).expect("setting a read timeout");
                let mut info = String::new();
                if BufReader::new(stream).read_line(&mut info).is_ok() && info.contains("\"jetstream\":true") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "nats-server on port {} did not become ready", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
