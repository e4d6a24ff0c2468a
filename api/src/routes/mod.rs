//! The `/v1` routes, by who calls them. Handlers parse and authorise, submit a command to
//! the sequencer or read a projection, and shape the answer; rules live in the domain.

mod admin;
mod ca;
mod log;
mod read;
mod test_clock;

use crate::problem::Problem;
use crate::{AppState, Caller, Open};
use axum::Router;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use commands::domain::{CaId, Cccd, Command};
use commands::registrar::{Accepted, Submission};
use event_store::{Metadata, Seq};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The OpenAPI document of every `/v1` route, served at `/openapi.json` and browsable at
/// `/docs`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "kyso", description = "The registry of record for a citizen digital-signature campaign. Errors are application/problem+json (RFC 9457) with a stable `type`."),
    paths(
        ca::lookup, ca::record, ca::switch, ca::import, ca::demands, ca::register_demand, ca::ack_demand,
        ca::register_staff, ca::list_staff, ca::revoke_staff, ca::verify_staff,
        admin::list_cas, admin::register_ca, admin::suspend, admin::reinstate, admin::expel, admin::zone,
        admin::counter, admin::booth, admin::complaint, admin::resolve, admin::violation, admin::violations,
        read::campaign, read::counts, read::rollup, read::targets, read::compliance, read::demand_report, read::booths,
        read::explain, read::citizen_trail, read::ca_trail, read::events,
        log::key, log::checkpoint, log::sign_checkpoint, log::inclusion, log::consistency, log::receipt,
    ),
    components(schemas(crate::problem::ProblemBody, Receipt)),
    modifiers(&Bearer),
    tags(
        (name = "ca", description = "CA services"),
        (name = "portal", description = "the citizen portal"),
        (name = "so", description = "the Sở (admin)"),
        (name = "reports", description = "reporters, the Sở, auditors"),
        (name = "audit", description = "auditors and the Sở"),
        (name = "public", description = "anyone"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`kyso token create --role …`"))
                    .build(),
            ),
        );
    }
}

pub fn router(qr_checks: crate::ratelimit::PerClient, test_clock: bool) -> Router<AppState> {
    let router = if test_clock { test_clock::router() } else { Router::new() };
    router.merge(ca::router(qr_checks)).merge(admin::router()).merge(read::router()).merge(log::router())
}

/// A JSON body whose problems are answered as problems: 400 for broken JSON, 415 for a
/// missing content type, 422 for a field of the wrong shape, 413 for a body over the limit.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = Problem;
    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(e) => Err(json_problem(e)),
        }
    }
}

fn json_problem(e: JsonRejection) -> Problem {
    let status = e.status();
    let slug = match e {
        JsonRejection::JsonDataError(_) => "invalid",
        JsonRejection::JsonSyntaxError(_) => "malformed-json",
        JsonRejection::MissingJsonContentType(_) => "unsupported-media-type",
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => "too-large",
        _ => "bad-body",
    };
    Problem::new(status, slug, e.body_text())
}

/// Path parameters whose problems are 400s that say which part is wrong.
pub struct PathParam<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParam<T> {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParam(p.0))
            .map_err(|e: PathRejection| Problem::bad_request("bad-path", e.body_text()))
    }
}

/// Query strings, likewise.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e: QueryRejection| Problem::bad_request("bad-query", e.body_text()))
    }
}

/// The registry's day, from its clock (reports default to it).
pub fn today(open: &Open) -> chrono::NaiveDate {
    commands::domain::registry::date_of(open.get().clock.now())
}

/// The registry's year: what CCCD birth years and ages are checked against.
pub fn current_year(open: &Open) -> u16 {
    use chrono::Datelike;
    today(open).year() as u16
}

/// Parses a CCCD, answering 422 with what is wrong with it.
pub fn cccd(open: &Open, field: &str, s: &str) -> Result<Cccd, Problem> {
    Cccd::parse(s, current_year(open)).map_err(|e| Problem::invalid(field, e))
}

/// Parses a CA id, answering 422 naming `field`.
pub fn ca_id(field: &str, s: &str) -> Result<CaId, Problem> {
    CaId::parse(s).map_err(|e| Problem::invalid(field, e))
}

/// An optional CA id from a body or query.
pub fn opt_ca_id(field: &str, s: Option<&str>) -> Result<Option<CaId>, Problem> {
    s.map(|s| ca_id(field, s)).transpose()
}

/// Proof that the registry accepted a command at a position of its log (R3): with the
/// leaf hash, the inclusion proof against any later checkpoint shows it was not rewritten.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Receipt {
    #[schema(value_type = u64)]
    pub seq: Seq,
    pub leaf_hash: String,
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: event_store::RegistryTime,
    /// Where to fetch the complete receipt (inclusion proof and signed checkpoint) once the
    /// next checkpoint is signed (within seconds).
    pub proof: String,
}

/// Submits `command` as the caller and waits for its durable answer.
pub async fn submit(
    open: &Open,
    caller: &Caller,
    command: Command,
    idempotency_key: Option<String>,
) -> Result<Accepted, Problem> {
    let meta = Metadata { actor: caller.0.to_string(), idempotency_key, ..Metadata::default() };
    Ok(writer(open)?.submit(Submission { meta, command }).await??)
}

/// The writer, or 421 on a read replica: commands go to the primary.
pub fn writer(open: &Open) -> Result<&commands::Sequencer<commands::registrar::Registrar>, Problem> {
    open.get().sequencer().ok_or_else(|| {
        Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            "read-only-replica",
            "this is a read replica: send commands (and recorded lookups) to the primary",
        )
    })
}

/// The receipt of the first event an accepted command recorded.
pub fn receipt(open: &Open, accepted: &Accepted) -> Result<Option<Receipt>, Problem> {
    let Some((first, _)) = accepted.seqs else { return Ok(None) };
    let (leaf, recorded_at) = match accepted.first_leaf {
        Some(known) => known,
        // A replayed answer: the event is read back.
        None => {
            let store = &open.get().store;
            let leaf = store.leaf_hash(first).map_err(|e| Problem::internal("reading a receipt", e))?;
            let env = store.event(first).map_err(|e| Problem::internal("reading a receipt", e))?;
            (leaf, env.recorded_at)
        }
    };
    Ok(Some(Receipt {
        seq: first,
        leaf_hash: hex::encode(leaf),
        recorded_at,
        proof: format!("/v1/log/receipt?seq={first}"),
    }))
}

/// The `Idempotency-Key` header, if sent (1–128 visible ASCII characters).
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, Problem> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(s) if !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()) => {
                Ok(Some(s.to_string()))
            }
            _ => Err(Problem::bad_request(
                "bad-idempotency-key",
                "Idempotency-Key must be 1 to 128 visible ASCII characters",
            )),
        },
    }
}
