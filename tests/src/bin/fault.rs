//! `kyso-fault`: fault scenarios against the real `kyso` binary on loopback (issue 9). Each
//! prints a row: scenario, operations, acknowledged, found in log, lost, duplicated, and the
//! run fails if anything acknowledged was lost or applied twice.
//!
//! Scenario `kill9`: HTTP clients record issuances for unique citizens while the server is
//! killed with SIGKILL and restarted, round after round. Every 201 carries a receipt (seq and
//! leaf hash); afterwards each must be in the log, at that seq, with that leaf, for that
//! citizen, and no citizen may hold two campaign certificates.

use commands::domain::Event;
use event_store::{EventStore, Seq};
use kyso_tests::nats::free_port;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const USAGE: &str = "usage: kyso-fault kill9 KYSO_BINARY [ROUNDS=5] [CLIENTS=64] [MS_PER_ROUND=1500]";

#[derive(Debug)]
struct Ack {
    citizen: String,
    seq: u64,
    leaf: String,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some("kill9"), Some(kyso)) = (args.first().map(String::as_str), args.get(1)) else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let number = |i: usize, default: u64| args.get(i).map_or(default, |a| a.parse().expect(USAGE));
    let (rounds, clients, ms) = (number(2, 5), number(3, 64), number(4, 1500));
    let row = kill9(kyso, rounds, clients as usize, Duration::from_millis(ms)).await;
    println!("| scenario | operations | acknowledged | found in log | lost | duplicated |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    println!("| {} | {} | {} | {} | {} | {} |", row.0, row.1, row.2, row.3, row.4, row.5);
    if row.4 > 0 || row.5 > 0 {
        std::process::exit(1);
    }
}

fn serve(kyso: &str, port: u16, data: &std::path::Path) -> Child {
    Command::new(kyso)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--test-clock", "2023-09-01T08:00:00Z"])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kyso starts")
}

async fn wait_ready(http: &reqwest::Client, port: u16) {
    for _ in 0..600 {
        let ok = http.get(format!("http://127.0.0.1:{port}/readyz")).send().await.is_ok_and(|r| r.status() == 200);
        if ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("kyso on port {port} not ready within a minute");
}

fn token(kyso: &str, data: &std::path::Path, role: &str) -> String {
    let out = Command::new(kyso).args(["token", "create", "--role", role, "--data-dir"]).arg(data).output().unwrap();
    String::from_utf8(out.stdout).expect("a token").trim().to_string()
}

/// The n-th citizen of the run: a valid Huế CCCD, different for every n below 120 million.
fn citizen(n: u64) -> String {
    let (serial, rest) = (n % 1_000_000, n / 1_000_000);
    format!("046{}{:02}{serial:06}", (rest / 60) % 2, 40 + rest % 60)
}

async fn kill9(kyso: &str, rounds: u64, clients: usize, per_round: Duration) -> (String, u64, u64, u64, u64, u64) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().join("data");
    let port = free_port();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("a client");
    let next = Arc::new(AtomicU64::new(0));
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let sent = Arc::new(AtomicU64::new(0));
    let mut ca = String::new();
    for round in 0..rounds {
        let mut server = serve(kyso, port, &data);
        wait_ready(&http, port).await;
        if round == 0 {
            let admin = token(kyso, &data, "admin");
            ca = token(kyso, &data, "ca:VNPT-CA");
            let body = serde_json::json!({"ca": "VNPT-CA", "name": "VNPT", "app_name": "VNPT SmartCA"});
            let r = http.post(format!("http://127.0.0.1:{port}/v1/cas")).bearer_auth(&admin).json(&body).send().await;
            assert!(r.is_ok_and(|r| r.status().is_success()), "registering the CA");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                let (http, next, acks, sent, stop, ca) =
                    (http.clone(), next.clone(), acks.clone(), sent.clone(), stop.clone(), ca.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let who = citizen(next.fetch_add(1, Ordering::Relaxed));
                        let body = serde_json::json!({"citizen": who, "channel": "app", "segment": "adult_citizen",
                            "commune": "19819", "activated_at": "2023-09-01T07:59:00Z"});
                        sent.fetch_add(1, Ordering::Relaxed);
                        let url = format!("http://127.0.0.1:{port}/v1/issuances");
                        let Ok(res) = http.post(url).bearer_auth(&ca).json(&body).send().await else { continue };
                        if res.status() != 201 {
                            continue;
                        }
                        // A 201 whose body never arrived is not an acknowledgement the client saw.
                        let Ok(v) = res.json::<serde_json::Value>().await else { continue };
                        let (Some(seq), Some(leaf)) =
                            (v["receipt"]["seq"].as_u64(), v["receipt"]["leaf_hash"].as_str())
                        else {
                            panic!("a 201 without a receipt: {v}");
                        };
                        acks.lock().expect("not poisoned").push(Ack { citizen: who, seq, leaf: leaf.to_string() });
                    }
                })
            })
            .collect();
        tokio::time::sleep(per_round).await;
        server.kill().expect("SIGKILL");
        server.wait().expect("reaped");
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.expect("a client task");
        }
    }
    // One more start: the registry recovers, then stops cleanly for the offline check.
    let mut server = serve(kyso, port, &data);
    wait_ready(&http, port).await;
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    server.wait().expect("reaped");

    let store: Arc<EventStore> = EventStore::open_read_only(&data).expect("the log opens");
    let acks = acks.lock().expect("not poisoned");
    let mut found = 0;
    for ack in acks.iter() {
        let Ok(env) = store.event(Seq(ack.seq)) else { continue };
        let same_citizen = matches!(commands::codec::decode(&env), Ok(Event::IssuanceRecorded(i)) if i.citizen.to_string() == ack.citizen);
        let same_leaf = store.leaf_hash(Seq(ack.seq)).is_ok_and(|h| hex::encode(h) == ack.leaf);
        found += u64::from(same_citizen && same_leaf);
    }
    let mut held: HashMap<String, u64> = HashMap::new();
    for env in store.read_from(Seq(1)) {
        if let Ok(Event::IssuanceRecorded(i)) = commands::codec::decode(&env.expect("a readable log")) {
            *held.entry(i.citizen.to_string()).or_default() += 1;
        }
    }
    let duplicated = held.values().filter(|n| **n > 1).count() as u64;
    let acknowledged = acks.len() as u64;
    (
        format!("kill -9 under HTTP load ×{rounds}"),
        sent.load(Ordering::Relaxed),
        acknowledged,
        found,
        acknowledged - found,
        duplicated,
    )
}
