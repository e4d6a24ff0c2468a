//! The scheduler around R12's 48 h deadline: demands registered, some acknowledged by their
//! CA, the test clock moved to just before the deadline and past it, with SIGKILLs right
//! after each move (while expiries are being written) and restarts. Each open demand must
//! expire exactly once and not early; an acknowledged one never.

use crate::server::{Kyso, START};
use crate::{Row, Size};
use commands::domain::Event;
use event_store::{EventStore, RegistryTime, Seq};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// What the log says happened to one demand.
#[derive(Default)]
struct Fate {
    expires_at: Option<RegistryTime>,
    acknowledged: bool,
    expiries: Vec<RegistryTime>,
}

fn at(after_start: chrono::Duration) -> String {
    let start = chrono::DateTime::parse_from_rfc3339(START).expect("START is RFC 3339");
    (start + after_start).to_rfc3339()
}

/// Expired demands on the CA's board (the projection, a little behind the log).
async fn expired_on_board(kyso: &Kyso, ca: &str) -> usize {
    let r = kyso.http.get(kyso.url("/v1/demands?stage=expired")).bearer_auth(ca).send().await;
    match r {
        Ok(r) => r.json::<Vec<serde_json::Value>>().await.map_or(0, |v| v.len()),
        Err(_) => 0,
    }
}

/// Expiries in the log of a stopped registry.
fn expiries(data: &std::path::Path) -> usize {
    let store: Arc<EventStore> = EventStore::open_read_only(data).expect("the log opens");
    let mut expired = 0;
    for env in store.read_from(Seq(1)) {
        let event = commands::codec::decode(&env.expect("a readable log"));
        expired += usize::from(matches!(event, Ok(Event::DemandExpired { .. })));
    }
    expired
}

pub async fn run(binary: &str, size: Size) -> Result<Row, String> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut kyso = Kyso::new(binary, &dir.path().join("data"), &[]);
    kyso.start().await;
    let admin = kyso.token("admin");
    let ca = kyso.register_ca(&admin, "VNPT-CA").await;
    let portal = kyso.token("portal");
    let demands = size.clients as u64 * 8;
    // Registered 16 at a time; every third acknowledged by the CA.
    let registered: Vec<Option<(u64, bool)>> = futures::stream::iter(0..demands)
        .map(|n| {
            let (kyso, portal, ca) = (&kyso, &portal, &ca);
            async move {
                let cccd = crate::load::citizen(60_000_000 + n);
                let body =
                    serde_json::json!({"citizen": cccd, "mode": "home", "phone": "0905000000", "commune": "19819"});
                let r = kyso.http.post(kyso.url("/v1/demands")).bearer_auth(portal).json(&body).send().await.ok()?;
                let id = r.json::<serde_json::Value>().await.ok()?["demand"].as_u64()?;
                let acked = n % 3 == 0;
                if acked {
                    let url = kyso.url(&format!("/v1/demands/{id}/ack"));
                    let r = kyso.http.post(url).bearer_auth(ca).json(&serde_json::json!({})).send().await.ok()?;
                    r.status().is_success().then_some(())?;
                }
                Some((id, acked))
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let registered: Vec<(u64, bool)> = registered.into_iter().flatten().collect();
    let acked: HashSet<u64> = registered.iter().filter(|(_, a)| *a).map(|(id, _)| *id).collect();
    let registered: HashSet<u64> = registered.into_iter().map(|(id, _)| id).collect();

    // Just before the deadline: scans happen every second and must expire nothing.
    kyso.set_clock(&admin, &at(chrono::Duration::hours(48) - chrono::Duration::minutes(1))).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    kyso.kill9();
    // Past it, killed as soon as the demand board shows more expiries than the log held:
    // the scheduler is then half-way through its scan. Twice.
    let mut in_log = 0;
    for minutes in [1, 2] {
        kyso.start().await;
        kyso.set_clock(&admin, &at(chrono::Duration::hours(48) + chrono::Duration::minutes(minutes))).await;
        let started = std::time::Instant::now();
        while expired_on_board(&kyso, &ca).await <= in_log && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        kyso.kill9();
        in_log = expiries(&kyso.data);
        eprintln!("  killed at +48h{minutes:02}m with {in_log} expiries in the log");
    }
    kyso.start().await;
    kyso.set_clock(&admin, &at(chrono::Duration::hours(49))).await;
    // Until the board shows every open demand expired (a minute at most; the offline check
    // below is the verdict).
    let open = registered.len() - acked.len();
    let started = std::time::Instant::now();
    while expired_on_board(&kyso, &ca).await < open && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let clean = kyso.stop();

    let store: Arc<EventStore> = EventStore::open_read_only(&kyso.data).expect("the log opens");
    let mut fates: HashMap<u64, Fate> = HashMap::new();
    for env in store.read_from(Seq(1)) {
        let env = env.expect("a readable log");
        match commands::codec::decode(&env) {
            Ok(Event::DemandRegistered { demand, expires_at, .. }) => {
                fates.entry(demand).or_default().expires_at = Some(expires_at)
            }
            Ok(Event::DemandAcknowledged { demand, .. }) => fates.entry(demand).or_default().acknowledged = true,
            Ok(Event::DemandExpired { demand, .. }) => fates.entry(demand).or_default().expiries.push(env.recorded_at),
            _ => {}
        }
    }
    let (mut found, mut duplicated, mut wrong) = (0, 0, 0);
    for id in &registered {
        let Some(f) = fates.get(id) else { continue };
        let early = f.expiries.iter().any(|t| Some(*t) < f.expires_at);
        wrong += u64::from(early || (f.acknowledged && !f.expiries.is_empty()));
        duplicated += u64::from(f.expiries.len() > 1);
        found += u64::from(!early && f.expiries.len() == usize::from(!f.acknowledged));
    }
    Ok(Row {
        scenario: "48 h demand deadline, kill -9 while expiring ×2".into(),
        operations: demands + demands.div_ceil(3),
        acknowledged: registered.len() as u64,
        found,
        duplicated,
        wrong: wrong + u64::from(!clean),
    })
}
