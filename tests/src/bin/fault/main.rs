//! `kyso-fault`: fault scenarios against the real `kyso` binary on loopback (issue 9). Each
//! prints a row: scenario, operations, acknowledged, found in log, lost, duplicated, wrong
//! answers; the run fails if anything acknowledged was lost, applied twice, or answered
//! wrongly (a 500, a 2xx without a receipt, a status other than the one the input deserves).
//!
//! - `kill9`: SIGKILL under HTTP load, round after round; every 201 receipt is then looked
//!   up in the log (seq, leaf, citizen).
//! - `nats`: NATS stopped and restarted under HTTP load; a consumer then reads the stream
//!   and must see every seq once, in order, with the log's bytes.
//! - `disk-full`: the data dir on a small tmpfs filled to the last byte under load: writes
//!   answer 503, reads keep working, the server stays up and records again once space returns.
//! - `abuse`: thousands of idle connections, slow clients, oversized and malformed bodies,
//!   invalid CCCDs, unknown routes, wrong roles, reused idempotency keys, while honest
//!   clients keep recording.
//! - `clock`: demands around their 48 h deadline with SIGKILLs while they expire: each open
//!   demand expires exactly once, none early.

mod abuse;
mod clock;
mod disk;
mod kill9;
mod load;
mod nats;
mod server;

use std::time::Duration;

const USAGE: &str = "usage: kyso-fault KYSO_BINARY [kill9|nats|disk-full|abuse|clock]...  (all when none given)
env: ROUNDS (5), CLIENTS (64), MS_PER_ROUND (1500) size the load of every scenario";

/// One line of the table.
pub struct Row {
    pub scenario: String,
    pub operations: u64,
    pub acknowledged: u64,
    pub found: u64,
    pub duplicated: u64,
    pub wrong: u64,
}

impl Row {
    fn lost(&self) -> u64 {
        self.acknowledged.saturating_sub(self.found)
    }
}

/// How hard every scenario pushes.
#[derive(Clone, Copy)]
pub struct Size {
    pub rounds: u64,
    pub clients: usize,
    pub per_round: Duration,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(kyso) = args.first().filter(|a| !a.starts_with('-')) else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let all = ["kill9", "nats", "disk-full", "abuse", "clock"];
    let chosen: Vec<&str> = if args.len() > 1 { args[1..].iter().map(String::as_str).collect() } else { all.to_vec() };
    if let Some(bad) = chosen.iter().find(|s| !all.contains(s)) {
        eprintln!("unknown scenario {bad:?}\n{USAGE}");
        std::process::exit(2);
    }
    let env = |name: &str, default: u64| -> u64 {
        std::env::var(name).ok().map_or(default, |v| {
            v.parse().unwrap_or_else(|_| {
                eprintln!("{name}={v:?} is not a number\n{USAGE}");
                std::process::exit(2)
            })
        })
    };
    let size = Size {
        rounds: env("ROUNDS", 5),
        clients: env("CLIENTS", 64) as usize,
        per_round: Duration::from_millis(env("MS_PER_ROUND", 1500)),
    };
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    for scenario in chosen {
        eprintln!("scenario {scenario}…");
        let row = match scenario {
            "kill9" => kill9::run(kyso, size).await,
            "nats" => nats::run(kyso, size).await,
            "disk-full" => disk::run(kyso, size).await,
            "abuse" => abuse::run(kyso, size).await,
            _ => clock::run(kyso, size).await,
        };
        match row {
            Ok(row) => rows.push(row),
            Err(why) => skipped.push(format!("{scenario}: {why}")),
        }
    }
    println!("| scenario | operations | acknowledged | found in log | lost | duplicated | wrong answers |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.operations,
            r.acknowledged,
            r.found,
            r.lost(),
            r.duplicated,
            r.wrong
        );
    }
    for s in &skipped {
        println!("\nSKIPPED {s}");
    }
    // A row with nothing acknowledged checked nothing.
    if rows.iter().any(|r| r.acknowledged == 0 || r.lost() > 0 || r.duplicated > 0 || r.wrong > 0) {
        std::process::exit(1);
    }
}
