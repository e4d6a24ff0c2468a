//! `kyso-replay`: the auditors' command line.

use clap::{Parser, Subcommand};
use event_store::EventStore;
use indicatif::{ProgressBar, ProgressStyle};
use projections::{Follower, Projections};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "kyso-replay", version, about = "Check and replay a kyso registry's history offline")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Recompute every Merkle leaf and the root from the events; name the first bad seq.
    Verify {
        /// The data dir (or a copy of it); opened read-only.
        #[arg(long, env = "KYSO_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Rebuild one projection (counts, compliance, demands, audit) from seq 1 and swap it
    /// in. Run it on a stopped server's data dir (a running server rebuilds on upgrade).
    Rebuild {
        projection: String,
        #[arg(long, env = "KYSO_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Verify { data_dir } => verify(&data_dir),
        Command::Rebuild { projection, data_dir } => match rebuild(&data_dir, &projection) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}").expect("a valid template"),
    );
    bar
}

fn rebuild(data_dir: &std::path::Path, name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (store, _writer) = EventStore::open(data_dir, false)?;
    let projections = Projections::open(&store)?;
    let mut follower = Follower::new(std::sync::Arc::clone(&store), &projections);
    // Level with the log first, so the rebuild covers all of it.
    follower.catch_up()?;
    let progress = bar(store.last_seq().0);
    let started = std::time::Instant::now();
    projections.rebuild(name, &store, &|done, _| progress.set_position(done))?;
    progress.finish_and_clear();
    // The follower swaps the rebuilt projection in and writes its snapshot.
    follower.catch_up()?;
    follower.persist()?;
    let secs = started.elapsed().as_secs_f64();
    println!("rebuilt {name} over {} events in {secs:.2}s", store.last_seq());
    Ok(())
}

fn verify(data_dir: &std::path::Path) -> ExitCode {
    let store = match EventStore::open_read_only(data_dir) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bar = bar(store.last_seq().0);
    let result = replay_tools::verify_log(&store, |n| bar.set_position(n));
    bar.finish_and_clear();
    match result {
        Ok(report) => {
            println!(
                "ok: {} events verified; tree size {} root {}",
                report.events,
                report.tree.size,
                hex::encode(report.tree.root)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
