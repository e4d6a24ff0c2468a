//! `kyso`: the registry server.

use api::auth::{Role, Tokens};
use api::{AppState, Limits, Registry, app};
use clap::{Parser, Subcommand};
use commands::domain::Campaign;
use commands::registrar::{InlineProjection, Registrar};
use commands::{Clock, Sequencer, SequencerConfig, SystemClock, scheduler};
use event_store::EventStore;
use projections::citizen::CitizenViews;
use projections::directory::Directory;
use projections::{Follower, Projections};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "kyso", version, about = "The registry of record for a citizen digital-signature campaign")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry over HTTP (creates the data dir on first start).
    Serve {
        #[arg(long, env = "KYSO_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, env = "KYSO_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// A built-in campaign (thua-thien-hue, hung-yen) or a path to a campaign TOML file.
        #[arg(long, env = "KYSO_CAMPAIGN", default_value = "thua-thien-hue")]
        campaign: String,
        /// Requests in flight at once; more are answered 503 with Retry-After.
        #[arg(long, default_value_t = 4096)]
        max_in_flight: usize,
    },
    /// Create an empty store in DIR (no-op if one is there).
    Init {
        #[arg(long, env = "KYSO_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (once: only its hash is stored).
    Create {
        /// admin, auditor, portal, reporter or ca:<CA-ID>
        #[arg(long)]
        role: Role,
        #[arg(long, env = "KYSO_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init { data_dir } => init(&data_dir),
        Command::Serve { listen, data_dir, campaign, max_in_flight } => {
            load_campaign(&campaign).and_then(|c| serve(listen, data_dir, c, max_in_flight))
        }
        Command::Token { command: TokenCommand::Create { role, data_dir } } => {
            api::auth::create(&data_dir, &role).map(|token| println!("{token}")).map_err(Into::into)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn load_campaign(name: &str) -> Result<Campaign, Error> {
    let text = match name {
        "thua-thien-hue" => include_str!("../../campaigns/thua-thien-hue.toml").to_string(),
        "hung-yen" => include_str!("../../campaigns/hung-yen.toml").to_string(),
        path => std::fs::read_to_string(path).map_err(|e| format!("campaign {path}: {e}"))?,
    };
    Ok(Campaign::from_toml(&text).map_err(|e| format!("campaign {name}: {e}"))?)
}

fn init(data_dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(data_dir)?;
    let (store, _writer) = EventStore::open(data_dir, true)?;
    println!("kyso store ready at {} (last seq {})", data_dir.display(), store.last_seq());
    Ok(())
}

/// What runs beside the HTTP server and must be stopped in order at shutdown.
struct Running {
    writer: std::thread::JoinHandle<()>,
    follower: std::thread::JoinHandle<Result<(), projections::follower::FollowError>>,
    stop_follower: Arc<AtomicBool>,
    scheduler: tokio::task::JoinHandle<()>,
}

/// Opens the store, replays the registry, starts the writer, the projections and the
/// deadline scheduler. Blocking: a large store takes a while.
fn open(data_dir: &Path, campaign: Campaign, state: &AppState) -> Result<Running, Error> {
    let (store, writer) = EventStore::open(data_dir, true)?;
    tracing::info!(last_seq = store.last_seq().0, "store open; replaying the registry");
    let inline: Vec<Box<dyn InlineProjection>> = vec![Box::new(CitizenViews), Box::new(Directory)];
    let registrar = Registrar::with_inline(Arc::clone(&store), campaign.clone(), inline)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (sequencer, writer) = Sequencer::start(writer, registrar, Arc::new(SystemClock), SequencerConfig::default());
    let projections = Projections::open(&store)?;
    let stop_follower = Arc::new(AtomicBool::new(false));
    let follower = Follower::new(Arc::clone(&store), &projections).spawn(Arc::clone(&stop_follower));
    let scheduler = tokio::runtime::Handle::current().spawn(scheduler::run(
        Arc::clone(&store),
        sequencer.clone(),
        Arc::clone(&clock),
        Duration::from_secs(1),
    ));
    state.set_registry(Registry { store, sequencer, projections, campaign, clock });
    Ok(Running { writer, follower, stop_follower, scheduler })
}

fn serve(listen: SocketAddr, data_dir: PathBuf, campaign: Campaign, max_in_flight: usize) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e} (is another kyso running? set --listen)"))?;
        std::fs::create_dir_all(&data_dir)?;
        let tokens = Tokens::load(&data_dir)?;
        let state = AppState::new(tokens, Limits { in_flight: max_in_flight, ..Limits::default() });
        let server = axum::serve(listener, app(state.clone())).with_graceful_shutdown(shutdown_signal());
        println!("kyso listening on http://{listen} (data dir {})", data_dir.display());
        let server = tokio::spawn(server.into_future());
        // Off the async threads: a large replay must not stall /healthz.
        let running = tokio::task::spawn_blocking({
            let (state, handle) = (state.clone(), tokio::runtime::Handle::current());
            move || {
                let _guard = handle.enter();
                open(&data_dir, campaign, &state)
            }
        })
        .await??;
        tracing::info!("ready");
        server.await??;
        // Drain: no new requests; stop proposing expiries; let the writer answer what is
        // queued (it stops when the last handle goes); fold and snapshot the projections.
        running.scheduler.abort();
        let _ = running.scheduler.await;
        drop(state);
        tokio::task::spawn_blocking(move || {
            running.writer.join().map_err(|_| "the writer thread panicked")?;
            running.stop_follower.store(true, Ordering::Release);
            running.follower.join().map_err(|_| "the projections thread panicked")??;
            Ok::<_, Error>(())
        })
        .await??;
        tracing::info!("shut down cleanly");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
