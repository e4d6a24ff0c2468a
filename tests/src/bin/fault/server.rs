//! The `kyso` binary under test: started, SIGKILLed, stopped with SIGTERM, given tokens.

use kyso_tests::nats::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every scenario starts the registry's clock here (a weekday in the campaign's phase 1).
pub const START: &str = "2023-09-01T08:00:00Z";

pub struct Kyso {
    binary: String,
    pub data: PathBuf,
    pub port: u16,
    extra: Vec<String>,
    child: Option<Child>,
    /// The server's stderr, outside the data dir (which may be a full disk); shown when it
    /// does not stop cleanly.
    log: tempfile::NamedTempFile,
    pub http: reqwest::Client,
}

impl Kyso {
    /// A registry in `data` (created at first start), on a free port, with a test clock.
    pub fn new(binary: &str, data: &Path, extra: &[&str]) -> Self {
        Self {
            binary: binary.to_string(),
            data: data.to_path_buf(),
            port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            log: tempfile::NamedTempFile::new().expect("a log file"),
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("an HTTP client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Starts the server and waits until `/readyz` answers 200.
    pub async fn start(&mut self) {
        let child = Command::new(&self.binary)
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port), "--test-clock", START])
            .arg("--data-dir")
            .arg(&self.data)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(self.log.reopen().expect("the log file"))
            .spawn()
            .expect("kyso starts");
        self.child = Some(child);
        if !self.readyz_until(|r| r["ready"] == true).await {
            panic!("kyso on port {} not ready within a minute", self.port);
        }
    }

    /// Polls `/readyz` until its answer satisfies `until`; false if a minute passes first.
    pub async fn readyz_until(&self, until: impl Fn(&serde_json::Value) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let probe = self.http.get(self.url("/readyz")).timeout(Duration::from_secs(1)).send().await;
            if let Ok(r) = probe
                && let Ok(v) = r.json::<serde_json::Value>().await
                && until(&v)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
    }

    /// SIGTERM: the server drains its writer and exits. Whether it exited, with 0, within a
    /// minute (if not, it is killed).
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return true };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                if !status.success() {
                    let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(10).collect();
                    eprintln!("  kyso exited with {status} after SIGTERM; its log ends:");
                    tail.iter().rev().for_each(|l| eprintln!("    {l}"));
                }
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("  kyso did not stop within a minute of SIGTERM; killed");
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Whether the process is still running (it must survive every scenario).
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn token(&self, role: &str) -> String {
        let out = Command::new(&self.binary)
            .args(["token", "create", "--role", role, "--data-dir"])
            .arg(&self.data)
            .output()
            .expect("kyso token create");
        String::from_utf8(out.stdout).expect("a token").trim().to_string()
    }

    /// Registers a CA as the Sở; returns that CA's token.
    pub async fn register_ca(&self, admin: &str, ca: &str) -> String {
        let body = serde_json::json!({"ca": ca, "name": ca, "app_name": format!("{ca} app")});
        let r = self.http.post(self.url("/v1/cas")).bearer_auth(admin).json(&body).send().await;
        assert!(r.is_ok_and(|r| r.status().is_success()), "registering {ca}");
        self.token(&format!("ca:{ca}"))
    }

    /// Sets the test clock (admin).
    pub async fn set_clock(&self, admin: &str, to: &str) {
        let r = self
            .http
            .post(self.url("/v1/test/clock"))
            .bearer_auth(admin)
            .json(&serde_json::json!({"set": to}))
            .send()
            .await;
        assert!(r.is_ok_and(|r| r.status().is_success()), "setting the test clock to {to}");
    }
}

impl Drop for Kyso {
    fn drop(&mut self) {
        self.kill9();
    }
}
