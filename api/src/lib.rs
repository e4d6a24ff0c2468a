//! The kyso HTTP server. [`app`] builds the router so tests can drive it in-process with
//! `tower::ServiceExt::oneshot`; `main.rs` parses flags, opens the store and serves it.
//!
//! - [`auth`]: bearer tokens → roles.
//! - [`problem`]: every error as `application/problem+json`.
//! - [`routes`]: the `/v1` routes, by who calls them.
//! - [`dashboard`]: the Sở's web page at `/`.

pub mod auth;
pub mod dashboard;
pub mod guard;
pub mod metrics;
pub mod notary;
pub mod problem;
pub mod ratelimit;
pub mod replica;
pub mod routes;

use auth::{Role, Tokens};
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use commands::Clock;
use commands::Sequencer;
use commands::SubmitError;
use commands::domain::Campaign;
use commands::domain::Cccd;
use commands::registrar::{Registrar, Replicator};
use event_store::EventStore;
use problem::Problem;
use projections::Projections;
use projections::citizen::{self, CitizenView};
use serde::Serialize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Everything a handler needs once the store is open.
pub struct Registry {
    pub store: Arc<EventStore>,
    pub writer: Writer,
    pub projections: Projections,
    pub campaign: Campaign,
    pub clock: Arc<dyn Clock>,
}

/// What appends to this server's log.
pub enum Writer {
    /// The primary decides commands and signs checkpoints.
    Primary {
        sequencer: Sequencer<Registrar>,
        notary: Arc<notary::Notary>,
        /// The NATS publisher's progress, when publishing is on (`--nats-url`).
        publisher: Option<Arc<publisher::Status>>,
    },
    /// A read replica (`kyso follow`) appends the primary's events and refuses commands.
    Replica { replicator: Sequencer<Replicator>, status: Arc<replica::Status> },
}

impl Registry {
    /// A citizen's view, rendered by the writer from the registry it holds, in turn with
    /// the commands: it includes every write acknowledged before it.
    pub async fn citizen_view(&self, citizen: Cccd) -> Result<Option<CitizenView>, SubmitError> {
        match &self.writer {
            Writer::Primary { sequencer, .. } => sequencer.read(move |r| citizen::render(r.registry(), &citizen)).await,
            Writer::Replica { replicator, .. } => {
                replicator.read(move |r| citizen::render(r.0.registry(), &citizen)).await
            }
        }
    }

    /// The sequencer that decides commands; `None` on a read replica.
    pub fn sequencer(&self) -> Option<&Sequencer<Registrar>> {
        match &self.writer {
            Writer::Primary { sequencer, .. } => Some(sequencer),
            Writer::Replica { .. } => None,
        }
    }

    /// The checkpoint signer; `None` on a read replica (the primary signs).
    pub fn notary(&self) -> Option<&Arc<notary::Notary>> {
        match &self.writer {
            Writer::Primary { notary, .. } => Some(notary),
            Writer::Replica { .. } => None,
        }
    }

    /// The NATS publisher's progress, when the primary publishes (`--nats-url`).
    pub fn publisher(&self) -> Option<&Arc<publisher::Status>> {
        match &self.writer {
            Writer::Primary { publisher, .. } => publisher.as_ref(),
            Writer::Replica { .. } => None,
        }
    }

    /// How a read replica's following goes; `None` on the primary.
    pub fn replica(&self) -> Option<&Arc<replica::Status>> {
        match &self.writer {
            Writer::Primary { .. } => None,
            Writer::Replica { status, .. } => Some(status),
        }
    }
}

/// What handlers share. The registry is set once it is open: the server listens (and
/// answers `/healthz`) before a large store has finished opening. One `Arc`: axum clones
/// the state for every request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

#[derive(Clone)]
pub struct Shared {
    registry: Arc<OnceLock<Registry>>,
    tokens: Arc<Tokens>,
    limits: Limits,
    metrics: Arc<metrics::Metrics>,
    qr_checks: ratelimit::PerClient,
    /// `--test-clock`: the clock `POST /v1/test/clock` moves; the route exists only then.
    test_clock: Option<Arc<commands::ManualClock>>,
}

/// Request limits; every one answers with a problem, never by queueing without bound.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// JSON bodies.
    pub body_bytes: usize,
    /// CSV imports.
    pub import_bytes: usize,
    pub timeout: Duration,
    /// Requests in flight at once; more get 503 + Retry-After.
    pub in_flight: usize,
    /// QR verifications per client IP per minute (bursts up to a tenth of that, at least 5);
    /// more get 429 + Retry-After.
    pub qr_checks_per_minute: std::num::NonZeroU32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 64 << 10,
            import_bytes: 32 << 20,
            timeout: Duration::from_secs(30),
            in_flight: 4096,
            qr_checks_per_minute: std::num::NonZeroU32::new(60).expect("non-zero"),
        }
    }
}

impl AppState {
    pub fn new(tokens: Tokens, limits: Limits) -> Self {
        let registry = Arc::new(OnceLock::new());
        let metrics = Arc::new(metrics::Metrics::new(Arc::clone(&registry)));
        let burst = (limits.qr_checks_per_minute.get() / 10).max(5);
        let qr_checks = ratelimit::PerClient::new(
            limits.qr_checks_per_minute,
            std::num::NonZeroU32::new(burst).expect("at least 5"),
        );
        Self(Arc::new(Shared { registry, tokens: Arc::new(tokens), limits, metrics, qr_checks, test_clock: None }))
    }

    /// Serves `POST /v1/test/clock`, which moves `clock` (tests and demos only).
    pub fn with_test_clock(self, clock: Arc<commands::ManualClock>) -> Self {
        Self(Arc::new(Shared { test_clock: Some(clock), ..(*self.0).clone() }))
    }

    /// Marks the registry open; `/readyz` answers 200 from now on.
    pub fn set_registry(&self, registry: Registry) {
        // Only the start-up task sets it, once.
        let _ = self.registry.set(registry);
    }

    pub fn registry(&self) -> Option<&Registry> {
        self.registry.get()
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The open registry, or 503 while it is still opening.
pub struct Open(pub AppState);

impl Open {
    pub fn get(&self) -> &Registry {
        self.0.registry.get().expect("checked when extracted")
    }
}

impl FromRequestParts<AppState> for Open {
    type Rejection = Problem;
    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        match state.registry.get() {
            Some(_) => Ok(Open(state.clone())),
            None => Err(Problem::unavailable("starting", "the registry is still opening its store", 2)),
        }
    }
}

/// The authenticated caller (`Authorization: Bearer <token>`).
#[derive(Debug, Clone)]
pub struct Caller(pub Role);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let unauthorized = |detail: &str| Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail.to_string());
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("send `Authorization: Bearer <token>`; `kyso token create` makes one"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        state.tokens.role(token.trim()).map(Caller).ok_or_else(|| unauthorized("unknown or revoked token"))
    }
}

impl Caller {
    /// The caller if it has one of `roles`, else 403 naming what is needed.
    pub fn require(&self, roles: &[&str]) -> Result<&Role, Problem> {
        let name = match &self.0 {
            Role::Ca(_) => "ca",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Portal => "portal",
            Role::Reporter => "reporter",
        };
        if roles.contains(&name) {
            Ok(&self.0)
        } else {
            Err(Problem::forbidden(format!("this route is for {}; you are {}", roles.join(" or "), self.0)))
        }
    }

    /// The CA a CA token speaks for (R19: a CA acts only as itself).
    pub fn ca(&self) -> Result<&commands::domain::CaId, Problem> {
        match &self.0 {
            Role::Ca(ca) => Ok(ca),
            other => Err(Problem::forbidden(format!("this route is for CA services; you are {other}"))),
        }
    }
}

/// The roles a route admits, checked by [`Authorized`].
pub trait Roles: Send + Sync + 'static {
    const ROLES: &'static [&'static str];
}

macro_rules! roles {
    ($($(#[$doc:meta])* $name:ident = $roles:expr;)*) => {$(
        $(#[$doc])*
        pub struct $name;
        impl Roles for $name {
            const ROLES: &'static [&'static str] = $roles;
        }
    )*};
}

roles! {
    /// The Sở.
    AdminOnly = &["admin"];
    /// CA services (a CA acts only as itself: see [`Caller::ca`]).
    CaOnly = &["ca"];
    CaOrAdmin = &["ca", "admin"];
    PortalOrAdmin = &["portal", "admin"];
    /// Who may look a citizen up: CAs (recorded, R2), the Sở and auditors.
    LookupRoles = &["ca", "admin", "auditor"];
    /// Reports: counts, not people (R9).
    Readers = &["reporter", "admin", "auditor"];
    /// Trails of people and CAs, and the raw log.
    Auditors = &["auditor", "admin"];
}

/// A caller holding one of `R`'s roles. As an extractor it runs before the path and body
/// extractors of the handler, so a caller without the role gets 403 whatever else is wrong
/// with its request, and learns nothing about what the route would accept.
pub struct Authorized<R: Roles>(pub Caller, std::marker::PhantomData<R>);

impl<R: Roles> FromRequestParts<AppState> for Authorized<R> {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(R::ROLES)?;
        Ok(Self(caller, std::marker::PhantomData))
    }
}

impl<R: Roles> std::ops::Deref for Authorized<R> {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.0
    }
}

pub fn app(state: AppState) -> Router {
    let limits = state.limits;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(openapi))
        .merge(dashboard::router())
        .nest("/v1", routes::router(state.qr_checks.clone(), state.test_clock.is_some()))
        .fallback(|| async { Problem::not_found("no such route; see /openapi.json") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this route does not take that method; see /openapi.json",
            )
        })
        .layer(guard::Guard::new(Arc::clone(&state.metrics), &limits))
        .with_state(state)
        .merge(swagger_ui_dist::generate_routes(swagger_ui_dist::ApiDefinition {
            uri_prefix: "/docs",
            api_definition: swagger_ui_dist::OpenApiSource::Uri("/openapi.json"),
            title: Some("kyso API"),
        }))
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    use utoipa::OpenApi;
    Json(routes::ApiDoc::openapi())
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    last_seq: Option<u64>,
    /// How many events the slowest asynchronous projection is behind.
    projection_lag: Option<u64>,
    /// Events JetStream has not acknowledged yet (absent when publishing is off). NATS
    /// being down does not make the registry unready: commands go on, the backlog grows.
    #[serde(skip_serializing_if = "Option::is_none")]
    publish_lag: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nats_connected: Option<bool>,
    /// On a replica that stopped: why, naming the seq or checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    replica_broken: Option<String>,
    /// On a replica: the largest primary checkpoint its tree was checked against.
    #[serde(skip_serializing_if = "Option::is_none")]
    verified_checkpoint: Option<u64>,
}

/// The store is open and commands can be served.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.registry.get() {
        Some(r) => {
            let last = r.store.last_seq();
            // A primary is ready while its writer runs; a replica while its log is intact.
            let broken = r.replica().and_then(|p| p.broken());
            let ready = match &r.writer {
                Writer::Primary { sequencer, .. } => !sequencer.is_stopped(),
                Writer::Replica { .. } => broken.is_none(),
            };
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            let publish_lag = r.publisher().map(|p| last.0.saturating_sub(p.acked().0));
            let readiness = Readiness {
                ready,
                last_seq: Some(last.0),
                projection_lag: Some(r.projections.lag(last)),
                publish_lag,
                nats_connected: r.publisher().map(|p| p.connected()).or(r.replica().map(|p| p.connected())),
                replica_broken: broken,
                verified_checkpoint: r.replica().map(|p| p.verified_checkpoint()),
            };
            (status, Json(readiness))
        }
        None => {
            let readiness = Readiness {
                ready: false,
                last_seq: None,
                projection_lag: None,
                publish_lag: None,
                nats_connected: None,
                replica_broken: None,
                verified_checkpoint: None,
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(readiness))
        }
    }
}
