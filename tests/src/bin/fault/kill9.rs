//! SIGKILL under HTTP load, repeatedly; then every 201 receipt must be in the log.

use crate::load::{Load, LogCheck, Tally, check_log};
use crate::server::Kyso;
use crate::{Row, Size};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub async fn run(binary: &str, size: Size) -> Result<Row, String> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut kyso = Kyso::new(binary, &dir.path().join("data"), &[]);
    let tally = Arc::new(Tally::default());
    let mut ca = String::new();
    for round in 0..size.rounds {
        kyso.start().await;
        if round == 0 {
            ca = kyso.register_ca(&kyso.token("admin"), "VNPT-CA").await;
        }
        let load = Load::start(&kyso.http, kyso.url("/v1/issuances"), &ca, size.clients, &tally);
        tokio::time::sleep(size.per_round).await;
        kyso.kill9();
        load.stop().await;
    }
    // One more start: the registry recovers, then stops cleanly for the offline check.
    kyso.start().await;
    let clean = kyso.stop();
    let acks = tally.acks.lock().expect("not poisoned");
    let LogCheck { found, duplicated, .. } = check_log(&kyso.data, &acks);
    Ok(Row {
        scenario: format!("kill -9 under HTTP load ×{}", size.rounds),
        operations: tally.sent.load(Ordering::Relaxed),
        acknowledged: acks.len() as u64,
        found,
        duplicated,
        wrong: tally.wrong.load(Ordering::Relaxed) + u64::from(!clean),
    })
}
