//! `/metrics` in the Prometheus text format: request counts and latencies per route, and,
//! read at scrape time, the sequencer's counters (commands, batches, commit time), its queue
//! depth and each projection's lag.

use crate::AppState;
use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteOnly {
    route: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    latency: Family<RouteOnly, Histogram>,
}

impl Metrics {
    pub fn new(registry_state: Arc<OnceLock<crate::Registry>>) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Family::<RouteOnly, Histogram>::new_with_constructor(|| {
            // 100 µs to ~13 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        registry.register("kyso_http_requests", "HTTP requests by route and status", requests.clone());
        registry.register("kyso_http_request_seconds", "HTTP request latency by route", latency.clone());
        registry.register_collector(Box::new(Live(registry_state)));
        Self { registry, requests, latency }
    }

    /// Counts and times a request by its route pattern (never by raw path: ids would
    /// explode the label set).
    pub(crate) fn record(&self, method: &Method, route: &str, status: StatusCode, elapsed: Duration) {
        let labels = RouteLabels { method: method.to_string(), route: route.to_owned(), status: status.as_u16() };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&RouteOnly { route: labels.route }).observe(elapsed.as_secs_f64());
    }

    pub(crate) fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Values read from the running registry at each scrape.
struct Live(Arc<OnceLock<crate::Registry>>);

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for Live {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(r) = self.0.get() else { return Ok(()) };
        if let Some(sequencer) = r.sequencer() {
            let s = sequencer.stats();
            counter(
                &mut e,
                "kyso_sequencer_commands",
                "commands answered by the writer",
                s.commands.load(Ordering::Relaxed),
            )?;
            counter(
                &mut e,
                "kyso_sequencer_batches",
                "group commits (batch size = commands / batches)",
                s.batches.load(Ordering::Relaxed),
            )?;
            counter(
                &mut e,
                "kyso_sequencer_failed_batches",
                "group commits not written: a failed write, or decided on top of one",
                s.failed_batches.load(Ordering::Relaxed),
            )?;
            counter(
                &mut e,
                "kyso_sequencer_commit_microseconds",
                "time spent in synced batch writes (fsync included)",
                s.commit_micros.load(Ordering::Relaxed),
            )?;
            gauge(
                &mut e,
                "kyso_sequencer_queue_depth",
                "commands waiting for the writer",
                sequencer.queue_depth() as i64,
            )?;
        }
        let last = r.store.last_seq();
        gauge(&mut e, "kyso_log_last_seq", "last seq in the log", last.0 as i64)?;
        for (name, applied) in r.projections.checkpoints() {
            gauge(
                &mut e,
                &format!("kyso_projection_{name}_lag"),
                "events the projection is behind the log",
                last.0.saturating_sub(applied.0) as i64,
            )?;
        }
        if let Some(p) = r.publisher() {
            let lag = last.0.saturating_sub(p.acked().0) as i64;
            gauge(&mut e, "kyso_publish_lag", "events not yet acknowledged by JetStream", lag)?;
            gauge(
                &mut e,
                "kyso_publish_connected",
                "1 while the publisher is connected to NATS",
                i64::from(p.connected()),
            )?;
        }
        Ok(())
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Err(e) => crate::problem::Problem::internal("rendering metrics", e).into_response(),
    }
}
