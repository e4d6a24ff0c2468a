//! What every request goes through, in one tower layer: the in-flight limit (503 +
//! `Retry-After` at once when it is reached, never a queue), the timeout, the body limit
//! and the request metrics.
//!
//! One layer rather than tower's `HandleError` → `LoadShed` → `GlobalConcurrencyLimit` →
//! `Timeout` stack plus a metrics layer and axum's body limit layer: axum boxes each route
//! once per layer, and each level's future holds the one below it, so under load the
//! tokio workers spent ~5 % of their samples in `memmove`, moving requests and futures
//! from level to level (`perf --call-graph dwarf`, session 22). With this layer, five
//! alternating pairs of `bench/load/run` (2026-12-06): tokio's CPU per request fell in all
//! ten comparisons, lookups 20.4–28.9 → 19.2–25.7 µs, issuances 26.9–34.9 → 23.4–28.9 µs.
//! A tower layer, not `axum::middleware::from_fn`, which per request clones the app state
//! and boxes a second clone of the inner service and its future (0.7–7 µs more per request
//! in session 19's pairs of runs).

use crate::Limits;
use crate::metrics::Metrics;
use crate::problem::Problem;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::Layer;

#[derive(Clone)]
pub struct Guard {
    metrics: Arc<Metrics>,
    /// Global: a per-route limit would let each route have `in_flight` of its own.
    in_flight: Arc<Semaphore>,
    timeout: Duration,
    body: DefaultBodyLimit,
}

impl Guard {
    pub fn new(metrics: Arc<Metrics>, limits: &Limits) -> Self {
        Self {
            metrics,
            in_flight: Arc::new(Semaphore::new(limits.in_flight)),
            timeout: limits.timeout,
            body: DefaultBodyLimit::max(limits.body_bytes),
        }
    }
}

impl<S> Layer<S> for Guard
where
    DefaultBodyLimit: Layer<S>,
{
    type Service = Guarded<<DefaultBodyLimit as Layer<S>>::Service>;
    fn layer(&self, inner: S) -> Self::Service {
        Guarded { inner: self.body.layer(inner), guard: self.clone() }
    }
}

#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    guard: Guard,
}

impl<S> tower::Service<Request> for Guarded<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = GuardedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let started = Instant::now();
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = req.method().clone();
        let stage = match Arc::clone(&self.guard.in_flight).try_acquire_owned() {
            Ok(permit) => Stage::Running {
                inner: self.inner.call(req),
                deadline: tokio::time::sleep_until(started + self.guard.timeout),
                _permit: permit,
            },
            Err(_) => Stage::Refused {
                response: Some(
                    Problem::unavailable("overloaded", "too many requests in flight; retry shortly", 1).into_response(),
                ),
            },
        };
        GuardedFuture { stage, metrics: Arc::clone(&self.guard.metrics), route, method, started }
    }
}

pin_project_lite::pin_project! {
    pub struct GuardedFuture<F> {
        #[pin]
        stage: Stage<F>,
        metrics: Arc<Metrics>,
        route: Option<MatchedPath>,
        method: Method,
        started: Instant,
    }
}

pin_project_lite::pin_project! {
    #[project = StageProj]
    enum Stage<F> {
        Running {
            #[pin]
            inner: F,
            #[pin]
            deadline: Sleep,
            // Held until the request is answered or dropped.
            _permit: OwnedSemaphorePermit,
        },
        Refused { response: Option<Response> },
    }
}

impl<F> Future for GuardedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.stage.project() {
            // The handler first: one that is ready at once never registers the timer.
            StageProj::Running { inner, deadline, .. } => match inner.poll(cx) {
                Poll::Ready(Ok(response)) => response,
                Poll::Ready(Err(never)) => match never {},
                Poll::Pending => match deadline.poll(cx) {
                    Poll::Ready(()) => Problem::unavailable(
                        "timeout",
                        "the request took too long; nothing may be assumed recorded, retry with the same Idempotency-Key",
                        1,
                    )
                    .into_response(),
                    Poll::Pending => return Poll::Pending,
                },
            },
            StageProj::Refused { response } => response.take().expect("a refused request is polled once"),
        };
        let route = this.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        this.metrics.record(this.method, route, response.status(), this.started.elapsed());
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::TYPE_BASE;
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use std::sync::OnceLock;
    use tower::ServiceExt;

    /// A router whose `/hold` answers once the test adds a permit to `release`.
    fn held(in_flight: usize, timeout: Duration) -> (Router, Guard, Arc<Semaphore>) {
        let release = Arc::new(Semaphore::new(0));
        let limits = Limits { in_flight, timeout, ..Limits::default() };
        let guard = Guard::new(Arc::new(Metrics::new(Arc::new(OnceLock::new()))), &limits);
        let wait = Arc::clone(&release);
        let router = Router::new()
            .route(
                "/hold",
                get(move || {
                    let wait = Arc::clone(&wait);
                    async move {
                        wait.acquire().await.unwrap().forget();
                        "done"
                    }
                }),
            )
            .layer(guard.clone());
        (router, guard, release)
    }

    fn hold() -> Request {
        Request::get("/hold").body(Body::empty()).unwrap()
    }

    /// A broken guard would leave the request waiting for ever: fail instead.
    async fn answer(router: &Router) -> Response {
        let call = router.clone().oneshot(hold());
        tokio::time::timeout(Duration::from_secs(10), call).await.expect("an answer within 10 s").unwrap()
    }

    async fn problem_type(response: Response) -> String {
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        json["type"].as_str().unwrap().trim_start_matches(TYPE_BASE).to_owned()
    }

    #[tokio::test]
    async fn a_request_beyond_the_in_flight_limit_gets_503_at_once_and_a_slot_frees_when_one_is_answered() {
        let (router, guard, release) = held(2, Duration::from_secs(60));
        let first = tokio::spawn(router.clone().oneshot(hold()));
        let second = tokio::spawn(router.clone().oneshot(hold()));
        let both_in = async {
            while guard.in_flight.available_permits() > 0 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), both_in).await.expect("two requests in flight within 10 s");
        let refused = answer(&router).await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()["retry-after"], "1");
        assert_eq!(problem_type(refused).await, "overloaded");

        release.add_permits(2);
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        assert_eq!(second.await.unwrap().unwrap().status(), StatusCode::OK);
        release.add_permits(1);
        assert_eq!(router.oneshot(hold()).await.unwrap().status(), StatusCode::OK);

        let text = guard.metrics.render().unwrap();
        assert!(text.contains(r#"kyso_http_requests_total{method="GET",route="/hold",status="200"} 3"#), "{text}");
        assert!(text.contains(r#"kyso_http_requests_total{method="GET",route="/hold",status="503"} 1"#), "{text}");
    }

    #[tokio::test]
    async fn a_request_past_the_timeout_gets_503_and_frees_its_slot() {
        let (router, _, release) = held(1, Duration::from_millis(50));
        let slow = answer(&router).await;
        assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(slow.headers()["retry-after"], "1");
        assert_eq!(problem_type(slow).await, "timeout");

        release.add_permits(1);
        assert_eq!(router.oneshot(hold()).await.unwrap().status(), StatusCode::OK);
    }
}
