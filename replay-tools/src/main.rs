//! `kyso-replay`: the auditors' command line.

use clap::{Parser, Subcommand};
use event_store::EventStore;
use indicatif::{ProgressBar, ProgressStyle};
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Verify { data_dir } => verify(&data_dir),
    }
}

fn verify(data_dir: &std::path::Path) -> ExitCode {
    let store = match EventStore::open_read_only(data_dir) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bar = ProgressBar::new(store.last_seq().0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}").expect("a valid template"),
    );
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
