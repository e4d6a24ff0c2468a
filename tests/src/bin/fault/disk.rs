//! Disk full: the data dir lives on a small tmpfs that a ballast file fills to the last byte
//! while clients record. Writes must answer 503 (never a 500), reads keep working, the
//! process stays up, and once the ballast is gone the registry records again by itself.

use crate::load::{Load, LogCheck, Tally, check_log, citizen, issuance_body};
use crate::server::Kyso;
use crate::{Row, Size};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A tmpfs mounted for the scenario, unmounted however it ends.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(at).status();
        ok.is_ok_and(|s| s.success()).then(|| Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros until the file system refuses another byte.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("the ballast file");
    let mut written = 0;
    for chunk in [1 << 20, 4096, 1] {
        let zeros = vec![0u8; chunk];
        while f.write_all(&zeros).and_then(|_| f.flush()).is_ok() {
            written += chunk as u64;
        }
    }
    written
}

pub async fn run(binary: &str, size: Size) -> Result<Row, String> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let Some(mount) = Tmpfs::mount(dir.path(), "512m") else {
        return Err("mounting a tmpfs needs root (run ./scripts/fault as root)".into());
    };
    let mut kyso = Kyso::new(binary, &mount.0.join("data"), &[]);
    kyso.start().await;
    let admin = kyso.token("admin");
    let (reporter, auditor) = (kyso.token("reporter"), kyso.token("auditor"));
    let ca = kyso.register_ca(&admin, "VNPT-CA").await;
    let tally = Arc::new(Tally::default());
    let load = Load::start(&kyso.http, kyso.url("/v1/issuances"), &ca, size.clients, &tally);
    tokio::time::sleep(size.per_round).await;

    let refused_before = tally.unavailable.load(Ordering::Relaxed);
    let ballast = mount.0.join("ballast");
    let filled = fill(&ballast);
    eprintln!("  disk full: {} MiB of ballast", filled >> 20);
    let mut wrong = 0;
    let failed_from = Instant::now();
    while tally.unavailable.load(Ordering::Relaxed) == refused_before && failed_from.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if tally.unavailable.load(Ordering::Relaxed) == refused_before {
        eprintln!("  writes never answered 503 on a full disk");
        wrong += 1;
    }
    tokio::time::sleep(size.per_round).await;
    // Reads while full: health, a report, the trail of an acknowledged citizen.
    let someone = tally.acks.lock().expect("not poisoned").first().map(|a| a.citizen.clone()).unwrap_or(citizen(0));
    for (path, token) in [
        ("/healthz".to_string(), &reporter),
        ("/v1/reports/counts".to_string(), &reporter),
        (format!("/v1/audit/citizens/{someone}"), &auditor),
    ] {
        let r = kyso.http.get(kyso.url(&path)).bearer_auth(token).send().await;
        if !r.as_ref().is_ok_and(|r| r.status() == 200) {
            eprintln!("  GET {path} on a full disk: {:?}", r.map(|r| r.status()));
            wrong += 1;
        }
    }
    if !kyso.alive() {
        eprintln!("  kyso exited on a full disk");
        return Ok(Row {
            scenario: "disk full".into(),
            operations: tally.sent.load(Ordering::Relaxed),
            acknowledged: tally.acks.lock().expect("not poisoned").len() as u64,
            found: 0,
            duplicated: 0,
            wrong: wrong + 1,
        });
    }

    std::fs::remove_file(&ballast).expect("removing the ballast");
    let acked_while_full = tally.acks.lock().expect("not poisoned").len();
    let freed = Instant::now();
    let recovered = loop {
        let probe = issuance_body(&citizen(100_000_000 + freed.elapsed().as_millis() as u64));
        let r = kyso.http.post(kyso.url("/v1/issuances")).bearer_auth(&ca).json(&probe).send().await;
        if r.is_ok_and(|r| r.status() == 201) {
            break Some(freed.elapsed());
        }
        if freed.elapsed() > Duration::from_secs(60) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    match recovered {
        Some(after) => eprintln!("  space back: recording again after {:.1} s", after.as_secs_f64()),
        None => {
            eprintln!("  still refusing writes a minute after space returned");
            wrong += 1;
        }
    }
    tokio::time::sleep(size.per_round).await;
    load.stop().await;
    let after = tally.acks.lock().expect("not poisoned").len();
    eprintln!("  acknowledged: {acked_while_full} before space returned, {after} in all");
    // The projections kept what they folded while they could not write: once caught up, the
    // counts report holds every issuance of the log (checked below).
    let reported = reported_issued(&kyso, &reporter).await;
    let clean = kyso.stop();
    let acks = tally.acks.lock().expect("not poisoned");
    let LogCheck { found, duplicated, issued } = check_log(&kyso.data, &acks);
    if reported != Some(issued) {
        eprintln!("  the counts report says {reported:?} issued, the log holds {issued}");
        wrong += 1;
    }
    Ok(Row {
        scenario: "disk full under HTTP load, then space freed".into(),
        operations: tally.sent.load(Ordering::Relaxed),
        acknowledged: acks.len() as u64,
        found,
        duplicated,
        wrong: wrong + tally.wrong.load(Ordering::Relaxed) + u64::from(!clean),
    })
}

/// Issued in all, from the counts report, once `/readyz` shows no projection lag.
async fn reported_issued(kyso: &Kyso, reporter: &str) -> Option<u64> {
    if !kyso.readyz_until(|r| r["projection_lag"] == 0).await {
        return None;
    }
    let counts = kyso.http.get(kyso.url("/v1/reports/counts")).bearer_auth(reporter).send().await.ok()?;
    counts.json::<serde_json::Value>().await.ok()?[0]["issued"].as_u64()
}
