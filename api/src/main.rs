//! `kyso`: the registry server.

use api::auth::{Role, Tokens};
use api::{AppState, Limits, Registry, Writer, app};
use clap::{Parser, Subcommand};
use commands::domain::Campaign;
use commands::registrar::{InlineProjection, Registrar};
use commands::{Clock, Sequencer, SequencerConfig, SystemClock, scheduler};
use event_store::EventStore;
use projections::citizen;
use projections::directory::Directory;
use projections::{Follower, Projections};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// jemalloc, for Rust and RocksDB alike (the workspace Cargo.toml says why).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        /// The checkpoints' origin line, used when this run makes the registry key.
        #[arg(long, env = "KYSO_LOG_ORIGIN", default_value = api::notary::DEFAULT_ORIGIN)]
        log_origin: String,
        /// Seconds between signed checkpoints while the log grows.
        #[arg(long, default_value_t = 5)]
        checkpoint_every: u64,
        /// Events between snapshots of the registry's state (start-up folds only the log
        /// after the last one; copying the registry for one pauses the writer ~0.1 s per
        /// million citizens, and a thread encodes and stores the copy).
        #[arg(long, default_value_t = commands::registrar::SNAPSHOT_EVERY)]
        state_snapshot_every: u64,
        /// Serve HTTPS with this PEM certificate chain (with --tls-key).
        #[arg(long, env = "KYSO_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, env = "KYSO_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Publish every event to this NATS server's JetStream (e.g. nats://127.0.0.1:4222).
        /// Off when not given. NATS being down never blocks commands.
        #[arg(long, env = "KYSO_NATS_URL")]
        nats_url: Option<String>,
        /// JetStream replicas of the stream.
        #[arg(long, default_value_t = 1)]
        nats_replicas: usize,
        /// Days the stream keeps events (0: for ever).
        #[arg(long, default_value_t = 0)]
        nats_max_age_days: u64,
        /// Publish JSON payloads (for consumers in other languages) instead of postcard.
        #[arg(long)]
        nats_json: bool,
        /// FOR TESTS AND DEMOS ONLY: start the registry's clock at this RFC 3339 time and move
        /// it only through `POST /v1/test/clock` (admin). Refused with --tls-cert.
        #[arg(long)]
        test_clock: Option<String>,
        /// QR verifications allowed per client IP per minute (public route, R11).
        #[arg(long, default_value_t = std::num::NonZeroU32::new(60).expect("non-zero"))]
        qr_checks_per_minute: std::num::NonZeroU32,
    },
    /// Create the data dir, its store and the registry's signing key (no-op if there).
    Init {
        #[arg(long, env = "KYSO_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// The checkpoints' origin line: the log's name, fixed when the key is made.
        #[arg(long, env = "KYSO_LOG_ORIGIN", default_value = api::notary::DEFAULT_ORIGIN)]
        log_origin: String,
    },
    /// Show a data dir's log: size, root, public key and newest checkpoint.
    Info {
        #[arg(long, env = "KYSO_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
    /// A read replica: follow a primary's JetStream stream into this data dir and serve the
    /// read-only routes (reports, audit, proofs, the Sở's and auditors' lookups).
    Follow {
        #[arg(long, env = "KYSO_LISTEN", default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// The replica's own data dir (its log is a copy of the primary's).
        #[arg(long, env = "KYSO_DATA_DIR", default_value = "./replica")]
        data_dir: PathBuf,
        #[arg(long, env = "KYSO_CAMPAIGN", default_value = "thua-thien-hue")]
        campaign: String,
        #[arg(long, env = "KYSO_NATS_URL", default_value = "nats://127.0.0.1:4222")]
        nats_url: String,
        /// The durable consumer's name (one per replica).
        #[arg(long, default_value = "kyso-follow")]
        consumer: String,
        /// The primary's base URL (e.g. http://127.0.0.1:8080): the replica checks its tree
        /// against the primary's signed checkpoints.
        #[arg(long)]
        primary: Option<String>,
        /// The primary's public key (text or file), pinned; otherwise read from --primary.
        #[arg(long)]
        key: Option<String>,
    },
    /// Erase a citizen's personal data where the law allows (R9): their salt (Merkle leaves
    /// about them become unlinkable; the tree still verifies), their audit-index entries and
    /// idempotency records. The events stay, and with them the registry and the citizen view
    /// rendered from it: they are the record that keeps R1 (no second certificate). Run with
    /// the server stopped.
    Erase {
        cccd: String,
        #[arg(long, env = "KYSO_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Simulate a province's campaign through a running server's HTTP API (demo data and an
    /// end-to-end check): prints what it did and whether the reports agree.
    Sim {
        /// The server to drive.
        #[arg(long, env = "KYSO_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The server's data dir, where the simulator adds the tokens it acts with.
        #[arg(long, env = "KYSO_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Citizens in the simulated population (16+).
        #[arg(long, default_value_t = 100_000)]
        population: usize,
        /// Campaign days to simulate (with a `--test-clock` server, the clock moves a day at a time).
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=365))]
        days: u32,
        /// Percent of the population that gets a certificate during the run.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(0..=100))]
        uptake: u32,
        /// Decides the population and the plan: the same seed, the same campaign.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Citizens served at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
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
        Command::Init { data_dir, log_origin } => init(&data_dir, &log_origin),
        Command::Info { data_dir } => info(&data_dir),
        Command::Follow { listen, data_dir, campaign, nats_url, consumer, primary, key } => load_campaign(&campaign)
            .and_then(|c| {
                let key = key.map(|k| parse_key(&k)).transpose()?;
                let config = api::replica::FollowConfig {
                    nats_url,
                    stream: format!("KYSO_{}", c.province_code),
                    consumer,
                    primary: primary.map(|p| p.trim_end_matches('/').to_string()),
                    key,
                };
                follow(listen, data_dir, c, config)
            }),
        Command::Erase { cccd, data_dir } => erase(&data_dir, &cccd),
        Command::Serve {
            listen,
            data_dir,
            campaign,
            max_in_flight,
            log_origin,
            checkpoint_every,
            state_snapshot_every,
            tls_cert,
            tls_key,
            qr_checks_per_minute,
            nats_url,
            nats_replicas,
            nats_max_age_days,
            nats_json,
            test_clock,
        } => {
            let test_clock = match test_clock {
                None => None,
                Some(_) if tls_cert.is_some() => {
                    eprintln!("error: --test-clock is for tests and demos; it is refused together with --tls-cert");
                    return ExitCode::FAILURE;
                }
                Some(t) => match chrono::DateTime::parse_from_rfc3339(&t) {
                    Ok(t) => {
                        let start = event_store::RegistryTime(t.timestamp_millis());
                        Some(Arc::new(commands::ManualClock::new(start)))
                    }
                    Err(e) => {
                        eprintln!("error: --test-clock {t:?} is not an RFC 3339 time: {e}");
                        return ExitCode::FAILURE;
                    }
                },
            };
            let options = Options {
                limits: Limits { in_flight: max_in_flight, qr_checks_per_minute, ..Limits::default() },
                log_origin,
                checkpoint_every: Duration::from_secs(checkpoint_every.max(1)),
                state_snapshot_every,
                tls: tls_cert.zip(tls_key),
                nats: nats_url.map(|url| NatsOptions {
                    url,
                    replicas: nats_replicas,
                    max_age: Duration::from_secs(nats_max_age_days * 86_400),
                    json: nats_json,
                }),
                test_clock,
            };
            load_campaign(&campaign).and_then(|c| serve(listen, data_dir, c, options))
        }
        Command::Sim { url, data_dir, population, days, uptake, seed, concurrency, quiet } => {
            let config = sim::Config {
                url,
                population,
                days,
                uptake_percent: uptake,
                seed,
                concurrency,
                progress: !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            simulate(&data_dir, &config)
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

/// Tokens for every role the simulator plays, added to the server's token file (the server
/// picks them up without a restart), then the simulation.
fn simulate(data_dir: &Path, config: &sim::Config) -> Result<(), Error> {
    let token = |role: &str| -> Result<String, Error> { Ok(api::auth::create(data_dir, &role.parse::<Role>()?)?) };
    let tokens = sim::Tokens {
        admin: token("admin")?,
        portal: token("portal")?,
        cas: commands::domain::ca::SEED_CAS
            .iter()
            .map(|(id, _, _)| Ok((id.to_string(), token(&format!("ca:{id}"))?)))
            .collect::<Result<_, Error>>()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let summary = runtime.block_on(sim::run(config, tokens))?;
    print!("{summary}");
    if summary.agrees() { Ok(()) } else { Err("the registry's reports do not match what the simulator did".into()) }
}

fn init(data_dir: &Path, log_origin: &str) -> Result<(), Error> {
    std::fs::create_dir_all(data_dir)?;
    let (store, _writer) = EventStore::open(data_dir, true)?;
    let key = api::notary::load_or_create_key(data_dir, log_origin)?;
    println!("kyso store ready at {} (last seq {})", data_dir.display(), store.last_seq());
    println!("registry key: {}", key.verifier());
    Ok(())
}

fn info(data_dir: &Path) -> Result<(), Error> {
    let store = EventStore::open_read_only(data_dir)?;
    let head = store.tree_head();
    println!("data dir:   {}", data_dir.display());
    println!("last seq:   {}", store.last_seq());
    println!("tree:       size {} root {}", head.size, hex::encode(head.root));
    match std::fs::read_to_string(data_dir.join(api::notary::PUBLIC_KEY_FILE)) {
        Ok(key) => println!("public key: {}", key.trim()),
        Err(_) => println!("public key: none yet (made by `kyso init` or the first `kyso serve`)"),
    }
    match store.latest_checkpoint()? {
        Some((size, note)) => println!("newest checkpoint (size {size}):\n{note}"),
        None => println!("no checkpoint signed yet"),
    }
    Ok(())
}

fn parse_key(arg: &str) -> Result<event_store::checkpoint::VerifierKey, Error> {
    let text = if Path::new(arg).is_file() { std::fs::read_to_string(arg)? } else { arg.to_string() };
    Ok(event_store::checkpoint::VerifierKey::parse(&text).map_err(|e| format!("--key: {e}"))?)
}

/// Binds early (a clear error if the port is taken) and serves `state` until SIGINT or
/// SIGTERM, over TLS when `tls` names a certificate and key.
async fn listen_and_serve(
    listen: SocketAddr,
    state: &AppState,
    tls: Option<&(PathBuf, PathBuf)>,
    data_dir: &Path,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, Error> {
    let listener =
        bind(listen).map_err(|e| format!("cannot listen on {listen}: {e} (is another kyso running? set --listen)"))?;
    // Peer addresses feed the per-client limit on the public QR route.
    let service = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    tokio::spawn({
        let handle = handle.clone();
        async move {
            shutdown_signal().await;
            // In-flight requests get this long to finish; new connections are refused.
            handle.graceful_shutdown(Some(Duration::from_secs(30)));
        }
    });
    Ok(match tls {
        Some((cert, key)) => {
            // One process-wide choice; an error means it was already made (the same one).
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|e| format!("TLS certificate {} / key {}: {e}", cert.display(), key.display()))?;
            println!("kyso listening on https://{listen} (data dir {})", data_dir.display());
            let tls =
                axum_server::tls_rustls::RustlsAcceptor::new(config).acceptor(FirstByteWithin(HEADER_READ_TIMEOUT));
            let mut server = axum_server::from_tcp(listener).acceptor(tls);
            slow_clients_limit(server.http_builder());
            tokio::spawn(server.handle(handle).serve(service))
        }
        None => {
            println!("kyso listening on http://{listen} (data dir {})", data_dir.display());
            let mut server = axum_server::from_tcp(listener).acceptor(FirstByteWithin(HEADER_READ_TIMEOUT));
            slow_clients_limit(server.http_builder());
            tokio::spawn(server.handle(handle).serve(service))
        }
    })
}

/// How many connections the kernel queues before kyso accepts them; it caps this at
/// `net.core.somaxconn` (4096 on current Linux). std's `bind` asks for 128: under a burst
/// (thousands of clients connecting at once, as in the abuse scenario) the queue overflows
/// and Linux drops the handshake's last ACK, leaving a client that believes it is
/// connected to a server that never saw it.
const LISTEN_BACKLOG: u32 = 4096;

fn bind(listen: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if listen.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As std's bind does on Unix: a restarted kyso can listen again at once even while
    // its previous connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    socket.listen(LISTEN_BACKLOG)?.into_std()
}

/// A client gets this long to send its request headers (and an idle keep-alive connection
/// this long to start its next request), then the connection is closed: without a limit,
/// clients that send nothing or trickle a byte now and then hold connections, and file
/// descriptors, for ever. 30 s is hyper's own default and the request timeout.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// hyper applies its header timeout only with a timer.
fn slow_clients_limit(http: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>) {
    http.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
}

/// Drops a connection whose first byte does not arrive in time. hyper's header timeout
/// starts only once the first bytes have told HTTP/1 from HTTP/2, so a client that connects
/// and sends nothing would otherwise be held for ever.
#[derive(Clone, Copy)]
struct FirstByteWithin(Duration);

impl<S: Send + 'static> axum_server::accept::Accept<tokio::net::TcpStream, S> for FirstByteWithin {
    type Stream = tokio::net::TcpStream;
    type Service = S;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<(tokio::net::TcpStream, S)>> + Send>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        let limit = self.0;
        Box::pin(async move {
            // As axum-server's default acceptor, which this one replaces: an answer goes out
            // when written, not held by Nagle's algorithm until the last one is acknowledged.
            stream.set_nodelay(true)?;
            // `peek` waits for a byte (or the end) without taking it; `readable()` alone may
            // wake early, as tokio's docs warn.
            let mut first = [0u8; 1];
            match tokio::time::timeout(limit, stream.peek(&mut first)).await {
                Ok(peeked) => peeked.map(|_| (stream, service)),
                Err(_) => {
                    Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no request within the header timeout"))
                }
            }
        })
    }
}

fn follow(
    listen: SocketAddr,
    data_dir: PathBuf,
    campaign: Campaign,
    config: api::replica::FollowConfig,
) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        std::fs::create_dir_all(&data_dir)?;
        let state = AppState::new(Tokens::load(&data_dir)?, Limits::default());
        let server = listen_and_serve(listen, &state, None, &data_dir).await?;
        let api::replica::Opened { store, writer: replicator, thread: writer } =
            api::replica::open(&data_dir, campaign.clone())?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let projections = Projections::open(&store)?;
        let stop_follower = Arc::new(AtomicBool::new(false));
        let follower = Follower::new(Arc::clone(&store), &projections).spawn(Arc::clone(&stop_follower));
        let following = api::replica::Following::spawn(Arc::clone(&store), replicator.clone(), config);
        state.set_registry(Registry {
            store,
            writer: Writer::Replica { replicator, status: Arc::clone(&following.status) },
            projections,
            campaign,
            clock,
        });
        tracing::info!("following");
        server.await??;
        following.stop().await?;
        drop(state);
        tokio::task::spawn_blocking(move || {
            writer.join().map_err(|_| "the writer thread panicked")?;
            stop_follower.store(true, Ordering::Release);
            follower.join().map_err(|_| "the projections thread panicked")??;
            Ok::<_, Error>(())
        })
        .await??;
        Ok(())
    })
}

fn erase(data_dir: &Path, cccd: &str) -> Result<(), Error> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    use chrono::Datelike;
    let year = commands::domain::registry::date_of(clock.now()).year() as u16;
    let cccd = commands::domain::Cccd::parse(cccd, year).map_err(|e| format!("{cccd:?}: {e}"))?;
    let (store, _writer) = EventStore::open(data_dir, false)
        .map_err(|e| format!("{e} (is `kyso serve` still running on this data dir? stop it first)"))?;
    let projections = Projections::open(&store)?;
    let erased = projections::erasure::erase_citizen(&store, &projections, &cccd)?;
    if !erased.salt {
        println!("{cccd}: no personal events in the log (nothing to unlink)");
    }
    println!(
        "{cccd}: salt {}, audit trail removed, {} idempotency records removed; `kyso-replay verify` still passes",
        if erased.salt { "deleted" } else { "absent" },
        erased.idempotency_records
    );
    Ok(())
}

struct Options {
    limits: Limits,
    log_origin: String,
    checkpoint_every: Duration,
    state_snapshot_every: u64,
    /// Certificate chain and key files (PEM).
    tls: Option<(PathBuf, PathBuf)>,
    nats: Option<NatsOptions>,
    /// `--test-clock`: a clock that moves only through `POST /v1/test/clock`.
    test_clock: Option<Arc<commands::ManualClock>>,
}

struct NatsOptions {
    url: String,
    replicas: usize,
    max_age: Duration,
    json: bool,
}

/// What runs beside the HTTP server and must be stopped in order at shutdown.
struct Running {
    writer: std::thread::JoinHandle<()>,
    follower: std::thread::JoinHandle<Result<(), projections::follower::FollowError>>,
    stop_follower: Arc<AtomicBool>,
    scheduler: tokio::task::JoinHandle<()>,
    signer: tokio::task::JoinHandle<()>,
    notary: Arc<api::notary::Notary>,
    /// Tells the publisher to finish what is in flight and stop; and its task.
    publisher: Option<(tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

/// Opens the store, loads the registry (its snapshot and the log after it), starts the
/// writer, the projections, the deadline scheduler, the checkpoint signer and the
/// publisher. Blocking: a large store takes a while.
fn open(data_dir: &Path, campaign: Campaign, state: &AppState, options: &Options) -> Result<Running, Error> {
    let (store, writer) = EventStore::open(data_dir, true)?;
    tracing::info!(last_seq = store.last_seq().0, "store open; loading the registry");
    let key = api::notary::load_or_create_key(data_dir, &options.log_origin)?;
    tracing::info!(key = %key.verifier(), "registry key");
    let notary = Arc::new(api::notary::Notary::new(Arc::clone(&store), key));
    let inline: Vec<Box<dyn InlineProjection>> = vec![Box::new(Directory)];
    let registrar = Registrar::with_inline(Arc::clone(&store), campaign.clone(), inline)?
        .answering(citizen::answer)
        .snapshot_every(options.state_snapshot_every);
    let clock: Arc<dyn Clock> = match &options.test_clock {
        Some(manual) => {
            // A restarted demo goes on from where its log ends: the registry's time never
            // goes back.
            let last = store.last_seq();
            if last.0 > 0 {
                let at = store.event(last)?.recorded_at;
                if manual.now() < at {
                    manual.set(at);
                }
            }
            Arc::clone(manual) as Arc<dyn Clock>
        }
        None => Arc::new(SystemClock),
    };
    let (sequencer, writer) = Sequencer::start(writer, registrar, Arc::clone(&clock), SequencerConfig::default());
    let projections = Projections::open(&store)?;
    let stop_follower = Arc::new(AtomicBool::new(false));
    let follower = Follower::new(Arc::clone(&store), &projections).spawn(Arc::clone(&stop_follower));
    let scheduler = tokio::runtime::Handle::current().spawn(scheduler::run(
        Arc::clone(&store),
        sequencer.clone(),
        Arc::clone(&clock),
        Duration::from_secs(1),
    ));
    let signer = tokio::runtime::Handle::current().spawn(Arc::clone(&notary).run(options.checkpoint_every));
    let (publisher, publishing) = match &options.nats {
        None => (None, None),
        Some(nats) => {
            let config = publisher::Config {
                url: nats.url.clone(),
                id: campaign.province_code.clone(),
                replicas: nats.replicas,
                max_age: nats.max_age,
                in_flight: 1024,
                json: nats.json,
            };
            let status = Arc::new(publisher::Status::default());
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let task = tokio::runtime::Handle::current().spawn(publisher::run(
                Arc::clone(&store),
                config,
                Arc::clone(&status),
                stopped,
            ));
            (Some(status), Some((stop, task)))
        }
    };
    state.set_registry(Registry {
        store,
        writer: Writer::Primary { sequencer, notary: Arc::clone(&notary), publisher },
        projections,
        campaign,
        clock,
    });
    Ok(Running { writer, follower, stop_follower, scheduler, signer, notary, publisher: publishing })
}

fn serve(listen: SocketAddr, data_dir: PathBuf, campaign: Campaign, options: Options) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        std::fs::create_dir_all(&data_dir)?;
        let tokens = Tokens::load(&data_dir)?;
        let mut state = AppState::new(tokens, options.limits);
        if let Some(clock) = &options.test_clock {
            tracing::warn!("TEST CLOCK: the registry's time is {} and moves only through POST /v1/test/clock; never run a real registry like this", clock.now().rfc3339());
            state = state.with_test_clock(Arc::clone(clock));
        }
        let server = listen_and_serve(listen, &state, options.tls.as_ref(), &data_dir).await?;
        // Off the async threads: a large replay must not stall /healthz.
        let running = tokio::task::spawn_blocking({
            let (state, handle) = (state.clone(), tokio::runtime::Handle::current());
            move || {
                let _guard = handle.enter();
                open(&data_dir, campaign, &state, &options)
            }
        })
        .await??;
        tracing::info!("ready");
        server.await??;
        // Drain: no new requests; stop proposing expiries; let the writer answer what is
        // queued (it stops when the last handle goes); fold and snapshot the projections.
        running.scheduler.abort();
        let _ = running.scheduler.await;
        running.signer.abort();
        let _ = running.signer.await;
        drop(state);
        let publisher = running.publisher;
        let writer = running.writer;
        let (notary, stop_follower, follower) = (running.notary, running.stop_follower, running.follower);
        tokio::task::spawn_blocking(move || writer.join().map_err(|_| "the writer thread panicked")).await??;
        // The log is final now: let the publisher drain what it has in flight (a bounded
        // wait: with NATS down the backlog stays for the next start).
        if let Some((stop, task)) = publisher {
            let _ = stop.send(true);
            if tokio::time::timeout(Duration::from_secs(10), task).await.is_err() {
                tracing::warn!("the NATS publisher did not finish within 10 s; it resumes from its cursor next start");
            }
        }
        tokio::task::spawn_blocking(move || {
            // The last events get a signed checkpoint before the process goes away.
            notary.checkpoint_now()?;
            stop_follower.store(true, Ordering::Release);
            follower.join().map_err(|_| "the projections thread panicked")??;
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
