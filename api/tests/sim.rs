//! `kyso sim` end to end: the real server with a test clock, the real simulator driving it
//! through HTTP for a few simulated days, and the simulator's tallies equal to the reports.

mod common;

use common::{Killed, free_port, within_a_minute};
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_campaign_through_the_api_matches_the_reports() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let _server = Killed(
        Command::new(env!("CARGO_BIN_EXE_kyso"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--test-clock", "2023-09-01T08:00:00Z"])
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ready = format!("http://127.0.0.1:{port}/readyz");
    within_a_minute(|| {
        let ready = ready.clone();
        async move { reqwest::get(&ready).await.ok().filter(|r| r.status().is_success()) }
    })
    .await;
    let run = |seed: &str| {
        Command::new(env!("CARGO_BIN_EXE_kyso"))
            .args(["sim", "--url", &format!("http://127.0.0.1:{port}"), "--population", "3000", "--days", "4"])
            .args(["--seed", seed, "--quiet"])
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap()
    };
    let first = run("7");
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{out}\n{}", String::from_utf8_lossy(&first.stderr));
    for line in ["issued by VNPT-CA", "issued by CA2", "demands registered", "violations published"] {
        assert!(out.lines().any(|l| l.contains(line) && l.ends_with(" ok")), "{line}:\n{out}");
    }
    for line in ["refused: already issued (R1)", "of which recorded late (R4)", "ignored, left to expire"] {
        let n: u64 = out
            .lines()
            .find(|l| l.starts_with(line) || l.trim_start().starts_with(line))
            .unwrap()
            .split_whitespace()
            .last()
            .unwrap()
            .parse()
            .unwrap();
        assert!(n > 0, "{line} is 0:\n{out}");
    }
    assert!(out.contains("CAs expelled") && out.contains("FPT-CA"), "{out}");
    // A second run on the same registry checks what it added, not the totals.
    let second = run("8");
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stdout));
}
