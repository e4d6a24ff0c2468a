//! `kyso`: the registry server.

use api::{AppState, app};
use clap::{Parser, Subcommand};
use event_store::EventStore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

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
    },
    /// Create an empty store in DIR (no-op if one is there).
    Init {
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
        Command::Serve { listen, data_dir } => serve(listen, data_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init(data_dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(data_dir)?;
    let (store, _writer) = EventStore::open(data_dir, true)?;
    println!("kyso store ready at {} (last seq {})", data_dir.display(), store.last_seq());
    Ok(())
}

fn serve(listen: SocketAddr, data_dir: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e} (is another kyso running? set --listen)"))?;
        let state = AppState::default();
        std::fs::create_dir_all(&data_dir)?;
        // Open the store off the async threads: a large WAL replay must not stall /healthz.
        let opening = tokio::task::spawn_blocking({
            let data_dir = data_dir.clone();
            move || EventStore::open(data_dir, true)
        });
        let server = axum::serve(listener, app(state.clone())).with_graceful_shutdown(shutdown_signal());
        println!("kyso listening on http://{listen} (data dir {})", data_dir.display());
        let server = tokio::spawn(server.into_future());
        let (store, _writer) = opening.await??;
        tracing::info!(last_seq = store.last_seq().0, "store open");
        state.set_store(store);
        server.await??;
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
