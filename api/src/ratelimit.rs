//! A per-client rate limit for the public QR verification route (R11): anyone may check a
//! staff member's QR code, but nobody may walk the token space. Keyed by the peer's IP
//! address; behind a reverse proxy every client shares the proxy's address, so put the
//! limit at the proxy there (forwarded headers are not trusted: clients can forge them).

use crate::problem::Problem;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

/// Forgotten clients are pruned once this many are tracked, so memory stays bounded.
const PRUNE_AT: usize = 100_000;

#[derive(Clone)]
pub struct PerClient(Arc<DefaultKeyedRateLimiter<IpAddr>>);

impl PerClient {
    /// `per_minute` requests a minute per client, with bursts of up to `burst`.
    pub fn new(per_minute: NonZeroU32, burst: NonZeroU32) -> Self {
        Self(Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst))))
    }
}

pub async fn limit(State(limiter): State<PerClient>, req: Request, next: Next) -> Response {
    // No peer address (an in-process test) means one shared bucket, not no limit.
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(addr)| addr.ip());
    if limiter.0.len() > PRUNE_AT {
        limiter.0.retain_recent();
    }
    match limiter.0.check_key(&ip) {
        Ok(()) => next.run(req).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(limiter.0.clock().now());
            let secs = u32::try_from(wait.as_secs()).unwrap_or(u32::MAX).max(1);
            Problem::too_many_requests("rate-limited", format!("too many QR checks from {ip}; retry in {secs} s"), secs)
                .into_response()
        }
    }
}
