//! Publishing to JetStream and following it (issue 7): how fast the publisher drains a log
//! of N events into a fresh stream, and how fast a replica catches up from zero on that
//! stream. Needs a NATS server with JetStream (`--nats-url`, the machine's by default).

use crate::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn table(runtime: &tokio::runtime::Runtime, base: &std::path::Path, url: &str, events: u64) {
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let store = crate::read_side::synthetic_log(&dir.path().join("primary"), events);
    // A stream of its own per run, so runs never dedupe against each other.
    let id = format!("BENCH{}", std::process::id());
    let config = publisher::Config {
        url: url.to_string(),
        id: id.clone(),
        replicas: 1,
        max_age: Duration::ZERO,
        in_flight: 1024,
        json: false,
    };
    let stream = config.stream_name();
    println!();
    println!("JetStream ({url}), {} events, file storage, one publisher / one replica:", fmt(events as f64));
    println!();
    println!("| pass | seconds | events/s |");
    println!("|---|---:|---:|");
    runtime.block_on(async {
        let status = Arc::new(publisher::Status::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let started = Instant::now();
        let task = tokio::spawn(publisher::run(Arc::clone(&store), config, Arc::clone(&status), stopped));
        while status.acked() < store.last_seq() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        println!("| publish the log (acks awaited in order) | {secs:.2} | {} |", fmt(events as f64 / secs));
        let _ = stop.send(true);
        let _ = task.await;

        let replica_dir = dir.path().join("replica");
        let campaign = commands::domain::Campaign::from_toml(include_str!("../../campaigns/thua-thien-hue.toml"))
            .expect("campaign");
        let api::replica::Opened { store: replica, writer: replicator, thread: writer_thread } =
            api::replica::open(&replica_dir, campaign).expect("the replica's store");
        let follow = api::replica::FollowConfig {
            nats_url: url.to_string(),
            stream: stream.clone(),
            consumer: "bench".into(),
            primary: None,
            key: None,
        };
        let started = Instant::now();
        let following = api::replica::Following::spawn(Arc::clone(&replica), replicator, follow);
        while replica.last_seq() < store.last_seq() {
            if let Some(why) = following.status.broken() {
                panic!("the replica stopped: {why}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "| replica catch-up from zero (append + registry + inline views) | {secs:.2} | {} |",
            fmt(events as f64 / secs)
        );
        let _ = following.stop().await;
        let _ = writer_thread.join();
        assert_eq!(replica.tree_head(), store.tree_head(), "the replica's tree is the primary's");
        let js = async_nats::jetstream::new(async_nats::connect(url).await.expect("NATS"));
        let _ = js.delete_stream(&stream).await;
    });
}
