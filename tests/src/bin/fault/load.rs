//! HTTP clients recording issuances for fresh citizens, and the offline check of what they
//! were told against the log.

use commands::domain::Event;
use event_store::{EventStore, Seq};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A 201 the client received: the receipt it would keep.
#[derive(Debug)]
pub struct Ack {
    pub citizen: String,
    pub seq: u64,
    pub leaf: String,
}

/// What every client of a scenario shares; it outlives server restarts.
#[derive(Default)]
pub struct Tally {
    next: AtomicU64,
    pub sent: AtomicU64,
    pub acks: Mutex<Vec<Ack>>,
    /// Answers that are never right for a valid issuance of a new citizen: anything but 201
    /// or 503, or a 201 without a receipt.
    pub wrong: AtomicU64,
    pub unavailable: AtomicU64,
}

/// The n-th citizen of a run: a valid Huế CCCD, different for every n below 120 million.
pub fn citizen(n: u64) -> String {
    let (serial, rest) = (n % 1_000_000, n / 1_000_000);
    format!("046{}{:02}{serial:06}", (rest / 60) % 2, 40 + rest % 60)
}

pub fn issuance_body(citizen: &str) -> serde_json::Value {
    serde_json::json!({"citizen": citizen, "channel": "app", "segment": "adult_citizen",
        "commune": "19819", "activated_at": "2023-09-01T07:59:00Z"})
}

/// Clients recording issuances until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(http: &reqwest::Client, url: String, token: &str, clients: usize, tally: &Arc<Tally>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..clients)
            .map(|_| {
                let (http, url, token, tally, stop) =
                    (http.clone(), url.clone(), token.to_string(), Arc::clone(tally), Arc::clone(&stop));
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let who = citizen(tally.next.fetch_add(1, Ordering::Relaxed));
                        tally.sent.fetch_add(1, Ordering::Relaxed);
                        let sent = http.post(&url).bearer_auth(&token).json(&issuance_body(&who)).send().await;
                        let Ok(res) = sent else {
                            // Refused connections while the server is down: back off a little.
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            continue;
                        };
                        match res.status().as_u16() {
                            201 => {}
                            503 => {
                                tally.unavailable.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                                continue;
                            }
                            // A valid issuance for a new citizen deserves nothing else.
                            status => {
                                if tally.wrong.fetch_add(1, Ordering::Relaxed) < 3 {
                                    let body = res.text().await.unwrap_or_default();
                                    eprintln!("  an issuance for {who} answered {status}: {body}");
                                }
                                continue;
                            }
                        }
                        // A 201 whose body never arrived is not an acknowledgement the client saw.
                        let Ok(v) = res.json::<serde_json::Value>().await else { continue };
                        match (v["receipt"]["seq"].as_u64(), v["receipt"]["leaf_hash"].as_str()) {
                            (Some(seq), Some(leaf)) => tally.acks.lock().expect("not poisoned").push(Ack {
                                citizen: who,
                                seq,
                                leaf: leaf.to_string(),
                            }),
                            _ => drop(tally.wrong.fetch_add(1, Ordering::Relaxed)),
                        }
                    }
                })
            })
            .collect();
        Self { stop, workers }
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.expect("a client task");
        }
    }
}

/// What the log says about the acknowledged issuances.
pub struct LogCheck {
    /// In the log at their receipt's seq, with the receipt's leaf and citizen.
    pub found: u64,
    /// Citizens holding more than one certificate.
    pub duplicated: u64,
    /// Issuances in the log, acknowledged or not.
    pub issued: u64,
}

pub fn check_log(data: &Path, acks: &[Ack]) -> LogCheck {
    let store: Arc<EventStore> = EventStore::open_read_only(data).expect("the log opens");
    let found = acks
        .iter()
        .filter(|ack| {
            let Ok(env) = store.event(Seq(ack.seq)) else { return false };
            let same_citizen = matches!(commands::codec::decode(&env),
                Ok(Event::IssuanceRecorded(i)) if i.citizen.to_string() == ack.citizen);
            same_citizen && store.leaf_hash(Seq(ack.seq)).is_ok_and(|h| hex::encode(h) == ack.leaf)
        })
        .count() as u64;
    let mut held: HashMap<String, u64> = HashMap::new();
    for env in store.read_from(Seq(1)) {
        if let Ok(Event::IssuanceRecorded(i)) = commands::codec::decode(&env.expect("a readable log")) {
            *held.entry(i.citizen.to_string()).or_default() += 1;
        }
    }
    LogCheck { found, duplicated: held.values().filter(|n| **n > 1).count() as u64, issued: held.values().sum() }
}
