//! The kyso HTTP server. [`app`] builds the router so tests can drive it in-process with
//! `tower::ServiceExt::oneshot`; `main.rs` only parses flags and serves it.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use event_store::EventStore;
use serde::Serialize;
use std::sync::{Arc, OnceLock};

/// What handlers share. The store is set once it is open: the server listens (and answers
/// `/healthz`) before a large store has finished opening.
#[derive(Clone, Default)]
pub struct AppState {
    store: Arc<OnceLock<Arc<EventStore>>>,
}

impl AppState {
    /// Marks the store open; `/readyz` answers 200 from now on.
    pub fn set_store(&self, store: Arc<EventStore>) {
        // Only the start-up task sets it, once.
        let _ = self.store.set(store);
    }
}

pub fn app(state: AppState) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(state)
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    last_seq: Option<u64>,
}

/// The store is open and commands can be served.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.get() {
        Some(store) => (StatusCode::OK, Json(Readiness { ready: true, last_seq: Some(store.last_seq().0) })),
        None => (StatusCode::SERVICE_UNAVAILABLE, Json(Readiness { ready: false, last_seq: None })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn status(state: &AppState, path: &str) -> StatusCode {
        app(state.clone()).oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap().status()
    }

    #[tokio::test]
    async fn readyz_turns_ready_once_the_store_is_open_and_healthz_is_always_ok() {
        let state = AppState::default();
        assert_eq!(status(&state, "/healthz").await, StatusCode::OK);
        assert_eq!(status(&state, "/readyz").await, StatusCode::SERVICE_UNAVAILABLE);
        let dir = tempfile::tempdir().unwrap();
        let (store, _writer) = EventStore::open(dir.path(), true).unwrap();
        state.set_store(store);
        assert_eq!(status(&state, "/readyz").await, StatusCode::OK);
        assert_eq!(status(&state, "/nope").await, StatusCode::NOT_FOUND);
    }
}
