//! Abuse while a storm of honest clients records: thousands of idle connections, slow clients that
//! trickle their bytes, and bad requests at volume (oversized and malformed bodies, invalid
//! CCCDs, unknown routes, wrong roles and methods, reused idempotency keys). Every bad request
//! must get the status it deserves, never a 5xx; honest clients must keep being served.

use crate::load::{Ack, Load, LogCheck, Tally, check_log, citizen, issuance_body};
use crate::server::Kyso;
use crate::{Row, Size};
use reqwest::Method;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const IDLE_CONNECTIONS: usize = 3000;
const SLOW_CLIENTS: usize = 100;
/// How long after the idle connections were opened all of them must be cut: the server's 30 s
/// plus room for a backlog and a busy CI machine.
const IDLE_CUT_WITHIN: Duration = Duration::from_secs(75);
/// Rounds of the bad-request table per sender, and senders.
const BAD_ROUNDS: usize = 40;
const BAD_SENDERS: usize = 16;

const OVERSIZED: &str = "oversized body";

/// One bad request and the statuses it may get.
struct Bad {
    what: &'static str,
    method: Method,
    path: String,
    token: Option<String>,
    content_type: &'static str,
    body: Vec<u8>,
    expect: &'static [u16],
}

fn table(ca: &str, portal: &str) -> Vec<Bad> {
    let json = |v: serde_json::Value| serde_json::to_vec(&v).expect("json");
    let valid = json(issuance_body(&citizen(90_000_000)));
    let bad = |what, method, path: &str, token: Option<&str>, content_type, body, expect| Bad {
        what,
        method,
        path: path.to_string(),
        token: token.map(str::to_string),
        content_type,
        body,
        expect,
    };
    // Most rows are the CA posting a JSON issuance that is wrong in one way.
    let issuance =
        |what, body, expect| bad(what, Method::POST, "/v1/issuances", Some(ca), "application/json", body, expect);
    vec![
        bad("no token", Method::POST, "/v1/issuances", None, "application/json", valid.clone(), &[401]),
        bad(
            "unknown token",
            Method::POST,
            "/v1/issuances",
            Some("kyso_nope"),
            "application/json",
            valid.clone(),
            &[401],
        ),
        bad(
            "portal records an issuance",
            Method::POST,
            "/v1/issuances",
            Some(portal),
            "application/json",
            valid.clone(),
            &[403],
        ),
        bad("CA registers a CA", Method::POST, "/v1/cas", Some(ca), "application/json", b"{}".to_vec(), &[403]),
        bad("unknown route", Method::GET, "/v1/nothing-here", Some(ca), "", vec![], &[404]),
        bad("wrong method", Method::DELETE, "/v1/issuances", Some(ca), "", vec![], &[405]),
        bad("wrong content type", Method::POST, "/v1/issuances", Some(ca), "text/plain", valid, &[415]),
        bad("CCCD in the path", Method::GET, "/v1/citizens/04614x000001", Some(ca), "", vec![], &[400, 422]),
        issuance("malformed JSON", b"{\"citizen\": ".to_vec(), &[400]),
        issuance("binary garbage", vec![0xff, 0xfe, 0, 1, 2], &[400]),
        issuance(OVERSIZED, vec![b' '; 3 << 20], &[413]),
        issuance("wrong field types", json(serde_json::json!({"citizen": 5})), &[400, 422]),
        issuance("short CCCD", json(issuance_body("046123")), &[422]),
        issuance("CCCD of no province", json(issuance_body("999140000001")), &[422]),
        issuance("CCCD of a child", json(issuance_body("046220000001")), &[422]),
    ]
}

/// What the bad-request senders share: the table, and what they count.
struct BadRun {
    kyso: Arc<Kyso>,
    table: Vec<Bad>,
    sent: AtomicU64,
    wrong: AtomicU64,
    /// Wrong answers per kind of bad request: how many, and the first one.
    misses: Mutex<HashMap<&'static str, (u64, String)>>,
}

/// Sends the table `BAD_ROUNDS` times, counting every answer other than the expected one.
async fn send_bad(run: Arc<BadRun>) {
    let BadRun { kyso, table, sent, wrong, misses } = &*run;
    for _ in 0..BAD_ROUNDS {
        for b in table {
            let mut req = kyso.http.request(b.method.clone(), kyso.url(&b.path)).body(b.body.clone());
            if let Some(t) = &b.token {
                req = req.bearer_auth(t);
            }
            if !b.content_type.is_empty() {
                req = req.header("content-type", b.content_type);
            }
            sent.fetch_add(1, Ordering::Relaxed);
            let status = req.send().await.map(|r| r.status().as_u16());
            // A server may close the connection instead of reading a body it refuses (RFC 9110
            // §15.5.14); a client still writing then sees the close, not the 413.
            let closed = status.as_ref().is_err_and(|e| e.is_request()) && b.what == OVERSIZED;
            if !closed && !status.as_ref().is_ok_and(|s| b.expect.contains(s)) {
                wrong.fetch_add(1, Ordering::Relaxed);
                let mut seen = misses.lock().expect("not poisoned");
                let entry = seen.entry(b.what).or_insert((0, format!("{status:?}, expected {:?}", b.expect)));
                entry.0 += 1;
            }
        }
    }
}

/// A key used once for one citizen, then again for another (refused), then again for the
/// first (the first answer, same seq). Returns the first acknowledgement and how many
/// answers were wrong; a replay that recorded a second event counts as wrong too.
async fn reuse_key(kyso: &Kyso, ca: &str, n: u64) -> (Option<Ack>, u64, u64) {
    let post = |who: String| {
        kyso.http
            .post(kyso.url("/v1/issuances"))
            .bearer_auth(ca)
            .header("idempotency-key", format!("fault-{n}"))
            .json(&issuance_body(&who))
            .send()
    };
    let (first, other) = (citizen(80_000_000 + n), citizen(81_000_000 + n));
    let Ok(r) = post(first.clone()).await else { return (None, 1, 1) };
    if r.status() != 201 {
        return (None, 1, 1);
    }
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    let (Some(seq), Some(leaf)) = (v["receipt"]["seq"].as_u64(), v["receipt"]["leaf_hash"].as_str()) else {
        return (None, 1, 1);
    };
    let ack = Ack { citizen: first.clone(), seq, leaf: leaf.to_string() };
    let mut wrong = 0;
    let reused = post(other).await;
    let refused = match reused {
        Ok(r) if r.status() == 422 => r
            .json::<serde_json::Value>()
            .await
            .is_ok_and(|p| p["type"].as_str().unwrap_or("").ends_with("idempotency-key-reused")),
        _ => false,
    };
    wrong += u64::from(!refused);
    let replay = post(first).await;
    let same = match replay {
        Ok(r) if r.status().is_success() => {
            r.json::<serde_json::Value>().await.is_ok_and(|v| v["receipt"]["seq"].as_u64() == Some(seq))
        }
        _ => false,
    };
    wrong += u64::from(!same);
    (Some(ack), 3, wrong)
}

/// Holds `n` connections open without sending a byte; returns how many connected.
async fn idle(port: u16, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)).await {
            held.push(s);
        }
    }
    held
}

/// A client that sends a valid request a byte every 250 ms (its headers alone would take
/// 40 s); returns whether the server cut it off before the headers were complete.
async fn slow(port: u16, ca: String, n: u64) -> bool {
    let request = format!(
        "POST /v1/issuances HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {ca}\r\ncontent-type: application/json\r\nx-slow: {n}\r\n\r\n"
    );
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else { return false };
    for b in request.as_bytes() {
        if s.write_all(std::slice::from_ref(b)).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// Connections the server has closed: a read does not wait (end of stream, a reset, or an
/// answer such as a 408).
fn closed(held: &[TcpStream]) -> usize {
    let mut buf = [0u8; 1];
    held.iter()
        .filter(|s| !matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock))
        .count()
}

pub async fn run(binary: &str, size: Size) -> Result<Row, String> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut kyso = Kyso::new(binary, &dir.path().join("data"), &[]);
    kyso.start().await;
    let ca = kyso.register_ca(&kyso.token("admin"), "VNPT-CA").await;
    let portal = kyso.token("portal");
    let tally = Arc::new(Tally::default());
    // A storm of honest clients, each on its own connection, beside the abuse.
    let storm = size.clients * 32;
    let load = Load::start(&kyso.http, kyso.url("/v1/issuances"), &ca, storm, &tally);

    let opened = std::time::Instant::now();
    let held = idle(kyso.port, IDLE_CONNECTIONS).await;
    eprintln!("  {} idle connections held", held.len());
    if held.len() < IDLE_CONNECTIONS {
        eprintln!("  could not open {IDLE_CONNECTIONS} connections: raise `ulimit -n` (./scripts/fault does)");
    }
    let slow_clients: Vec<_> = (0..SLOW_CLIENTS as u64).map(|n| tokio::spawn(slow(kyso.port, ca.clone(), n))).collect();
    let acked_before = tally.acks.lock().expect("not poisoned").len();

    let kyso = Arc::new(kyso);
    let run = Arc::new(BadRun {
        kyso: Arc::clone(&kyso),
        table: table(&ca, &portal),
        sent: AtomicU64::new(0),
        wrong: AtomicU64::new(0),
        misses: Mutex::default(),
    });
    let senders: Vec<_> = (0..BAD_SENDERS).map(|_| tokio::spawn(send_bad(Arc::clone(&run)))).collect();
    let mut key_ops = 0;
    for n in 0..200 {
        let (ack, ops, bad) = reuse_key(&kyso, &ca, n).await;
        key_ops += ops;
        run.wrong.fetch_add(bad, Ordering::Relaxed);
        tally.acks.lock().expect("not poisoned").extend(ack);
    }
    for s in senders {
        s.await.expect("a bad-request sender");
    }
    for (what, (n, first)) in run.misses.lock().expect("not poisoned").iter() {
        eprintln!("  {what}: {n} wrong answers, the first {first}");
    }
    let served_meanwhile = tally.acks.lock().expect("not poisoned").len() - acked_before;
    eprintln!("  honest issuances acknowledged during the abuse: {served_meanwhile}");
    if served_meanwhile == 0 {
        run.wrong.fetch_add(1, Ordering::Relaxed);
    }
    load.stop().await;
    let mut cut = 0;
    for c in slow_clients {
        cut += usize::from(c.await.expect("a slow client"));
    }
    // The server gives a connection 30 s from when it accepts it, and under the storm a
    // connection can wait in the listen backlog before that: poll with room to spare rather
    // than count once. (CI runs saw 2999 of 3000 closed, at 34 s and again at 75 s: with
    // std's backlog of 128 the kernel had dropped one handshake's last ACK, so the server
    // never saw a connection the client believed open. kyso now listens with a backlog
    // deeper than this scenario's connections.)
    let mut closed_now = closed(&held);
    while closed_now < held.len() && opened.elapsed() < IDLE_CUT_WITHIN {
        tokio::time::sleep(Duration::from_millis(250)).await;
        closed_now = closed(&held);
    }
    let closed = closed_now;
    eprintln!(
        "  cut off by the server: {cut} of {SLOW_CLIENTS} slow clients, {closed} of {} idle connections",
        held.len()
    );
    run.wrong.fetch_add((SLOW_CLIENTS - cut + IDLE_CONNECTIONS - closed) as u64, Ordering::Relaxed);
    drop(held);
    let (bad_sent, wrong) = (run.sent.load(Ordering::Relaxed), run.wrong.load(Ordering::Relaxed));
    drop(run);
    let mut kyso = Arc::into_inner(kyso).expect("the senders are done");
    let alive = kyso.alive();
    let clean = kyso.stop();
    let acks = tally.acks.lock().expect("not poisoned");
    let LogCheck { found, duplicated, .. } = check_log(&kyso.data, &acks);
    Ok(Row {
        scenario: format!(
            "{storm} clients at once + {IDLE_CONNECTIONS} idle + {SLOW_CLIENTS} slow connections, bad requests, reused keys"
        ),
        operations: tally.sent.load(Ordering::Relaxed) + bad_sent + key_ops + (IDLE_CONNECTIONS + SLOW_CLIENTS) as u64,
        acknowledged: acks.len() as u64,
        found,
        duplicated,
        wrong: wrong + tally.wrong.load(Ordering::Relaxed) + u64::from(!alive || !clean),
    })
}
