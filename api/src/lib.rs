//! The kyso HTTP server. [`app`] builds the router so tests can drive it in-process with
//! `tower::ServiceExt::oneshot`; `main.rs` parses flags, opens the store and serves it.
//!
//! - [`auth`]: bearer tokens → roles.
//! - [`problem`]: every error as `application/problem+json`.
//! - [`routes`]: the `/v1` routes, by who calls them.

pub mod auth;
pub mod problem;
pub mod routes;

use auth::{Role, Tokens};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use axum::{Router, extract::DefaultBodyLimit};
use commands::Clock;
use commands::Sequencer;
use commands::domain::Campaign;
use commands::registrar::Registrar;
use event_store::EventStore;
use problem::Problem;
use projections::Projections;
use serde::Serialize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Everything a handler needs once the store is open.
pub struct Registry {
    pub store: Arc<EventStore>,
    pub sequencer: Sequencer<Registrar>,
    pub projections: Projections,
    pub campaign: Campaign,
    pub clock: Arc<dyn Clock>,
}

/// What handlers share. The registry is set once it is open: the server listens (and
/// answers `/healthz`) before a large store has finished opening.
#[derive(Clone)]
pub struct AppState {
    registry: Arc<OnceLock<Registry>>,
    tokens: Arc<Tokens>,
    limits: Limits,
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
}

impl Default for Limits {
    fn default() -> Self {
        Self { body_bytes: 64 << 10, import_bytes: 32 << 20, timeout: Duration::from_secs(30), in_flight: 4096 }
    }
}

impl AppState {
    pub fn new(tokens: Tokens, limits: Limits) -> Self {
        Self { registry: Arc::new(OnceLock::new()), tokens: Arc::new(tokens), limits }
    }

    /// Marks the registry open; `/readyz` answers 200 from now on.
    pub fn set_registry(&self, registry: Registry) {
        // Only the start-up task sets it, once.
        let _ = self.registry.set(registry);
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

pub fn app(state: AppState) -> Router {
    let limits = state.limits;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .nest("/v1", routes::router(limits))
        .fallback(|| async { Problem::not_found("no such route; see the README's route table") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this route does not take that method; see the README's route table",
            )
        })
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(overloaded))
                .load_shed()
                // Global: a per-route limit would let each route have `in_flight` of its own.
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(limits.in_flight))
                .timeout(limits.timeout),
        )
        .with_state(state)
}

/// The in-flight limit or the timeout answered for the router.
async fn overloaded(e: tower::BoxError) -> Problem {
    if e.is::<tower::timeout::error::Elapsed>() {
        Problem::unavailable(
            "timeout",
            "the request took too long; nothing may be assumed recorded, retry with the same Idempotency-Key",
            1,
        )
    } else {
        Problem::unavailable("overloaded", "too many requests in flight; retry shortly", 1)
    }
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
}

/// The store is open and commands can be served.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.registry.get() {
        Some(r) => {
            let last = r.store.last_seq();
            let ready = !r.sequencer.is_stopped();
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            (status, Json(Readiness { ready, last_seq: Some(last.0), projection_lag: Some(r.projections.lag(last)) }))
        }
        None => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(Readiness { ready: false, last_seq: None, projection_lag: None }))
        }
    }
}
