//! NATS stopped and restarted under HTTP load; afterwards a consumer reads the stream from
//! its start and must see every seq of the log once, in order, with the log's bytes.

use crate::load::{Load, LogCheck, Tally, check_log};
use crate::server::Kyso;
use crate::{Row, Size};
use event_store::EventStore;
use kyso_tests::nats::NatsServer;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub async fn run(binary: &str, size: Size) -> Result<Row, String> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut nats = NatsServer::start();
    let mut kyso = Kyso::new(binary, &dir.path().join("data"), &["--nats-url", &nats.url()]);
    kyso.start().await;
    let ca = kyso.register_ca(&kyso.token("admin"), "VNPT-CA").await;
    let tally = Arc::new(Tally::default());
    let load = Load::start(&kyso.http, kyso.url("/v1/issuances"), &ca, size.clients, &tally);
    for _ in 0..size.rounds.min(3) {
        tokio::time::sleep(size.per_round).await;
        nats.stop();
        tokio::time::sleep(size.per_round * 2).await;
        nats.restart();
    }
    tokio::time::sleep(size.per_round).await;
    load.stop().await;
    let caught_up = kyso.readyz_until(|r| r["publish_lag"] == 0).await;
    if !caught_up {
        eprintln!("  the publisher did not catch up within a minute");
    }
    let clean = kyso.stop();

    let store: Arc<EventStore> = EventStore::open_read_only(&kyso.data).expect("the log opens");
    let stream = kyso_tests::publish::read_stream(&nats.url(), &store).await;
    eprintln!("  stream vs log ({} events): {stream:?}", store.last_seq().0);
    drop(store);
    let acks = tally.acks.lock().expect("not poisoned");
    let LogCheck { found, duplicated, .. } = check_log(&kyso.data, &acks);
    Ok(Row {
        scenario: format!("NATS stopped ×{} under HTTP load, consumer from seq 1", size.rounds.min(3)),
        operations: tally.sent.load(Ordering::Relaxed),
        acknowledged: acks.len() as u64,
        // Found means: in the log and delivered to the consumer, once, in order.
        found: if stream.missing == 0 && stream.altered == 0 && caught_up { found } else { 0 },
        duplicated: duplicated + stream.duplicated,
        wrong: tally.wrong.load(Ordering::Relaxed) + u64::from(!clean),
    })
}
