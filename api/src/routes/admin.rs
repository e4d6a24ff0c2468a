//! The Sở's referee actions (R13, R14) and complaints (portal and Sở).

use super::{Body, PathParam, Receipt, ca_id, cccd, receipt, submit};
use crate::problem::Problem;
use crate::{AdminOnly, AppState, Authorized, Caller, Open, PortalOrAdmin};
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use commands::domain::event::ComplaintKind;
use commands::domain::{Command, Event};
use event_store::Seq;
use projections::directory;
use serde::{Deserialize, Serialize};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/cas", get(list_cas).post(register_ca))
        .route("/cas/{id}/suspend", post(suspend))
        .route("/cas/{id}/reinstate", post(reinstate))
        .route("/cas/{id}/expel", post(expel))
        .route("/zones", post(zone))
        .route("/counters", post(counter))
        .route("/booths", post(booth))
        .route("/complaints", post(complaint))
        .route("/complaints/{id}/resolve", post(resolve))
        .route("/violations", get(violations).post(violation))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Done {
    #[schema(value_type = Option<Vec<u64>>)]
    seqs: Option<(Seq, Seq)>,
    receipt: Option<Receipt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
}

async fn admin_command(open: &Open, caller: &Caller, command: Command) -> Result<(StatusCode, Json<Done>), Problem> {
    let accepted = submit(open, caller, command, None).await?;
    let id = accepted.events.iter().find_map(|e| match e {
        Event::ComplaintFiled { complaint, .. } => Some(*complaint),
        _ => None,
    });
    let status = if accepted.seqs.is_some() { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(Done { seqs: accepted.seqs, receipt: receipt(open, &accepted)?, id })))
}

#[utoipa::path(
    get,
    path = "/v1/cas",
    tag = "public",
    summary = "CAs and their status",
    responses((status = 200, body = Vec<projections::directory::CaCard>), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json"))
)]
pub(super) async fn list_cas(open: Open) -> Result<impl IntoResponse, Problem> {
    Ok(Json(directory::cas(&open.get().store).map_err(|e| Problem::internal("reading CAs", e))?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CaBody {
    ca: String,
    name: String,
    app_name: String,
}

#[utoipa::path(
    post,
    path = "/v1/cas",
    tag = "so",
    summary = "Register a CA",
    request_body = CaBody,
    responses((status = 201, body = Done), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub(super) async fn register_ca(
    open: Open,
    caller: Authorized<AdminOnly>,
    Body(b): Body<CaBody>,
) -> Result<impl IntoResponse, Problem> {
    admin_command(&open, &caller, Command::RegisterCa { ca: ca_id("ca", &b.ca)?, name: b.name, app_name: b.app_name })
        .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Reason {
    reason: String,
    #[serde(default)]
    #[schema(value_type = Vec<u64>)]
    violations: Vec<Seq>,
}

#[utoipa::path(
    post,
    path = "/v1/cas/{id}/suspend",
    tag = "so",
    summary = "R13: suspend a CA",
    params(("id" = String, Path)),
    request_body = Reason,
    responses((status = 201, body = Done), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub(super) async fn suspend(
    open: Open,
    caller: Authorized<AdminOnly>,
    PathParam(id): PathParam<String>,
    Body(b): Body<Reason>,
) -> Result<impl IntoResponse, Problem> {
    admin_command(&open, &caller, Command::SuspendCa { ca: ca_id("id", &id)?, reason: b.reason }).await
}

#[utoipa::path(
    post,
    path = "/v1/cas/{id}/reinstate",
    tag = "so",
    summary = "Reinstate a suspended CA",
    params(("id" = String, Path)),
    responses((status = 201, body = Done), (status = 200, description = "already active", body = Done), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub(super) async fn reinstate(
    open: Open,
    caller: Authorized<AdminOnly>,
    PathParam(id): PathParam<String>,
) -> Result<impl IntoResponse, Problem> {
    admin_command(&open, &caller, Command::ReinstateCa { ca: ca_id("id", &id)? }).await
}

#[utoipa::path(
    post,
    path = "/v1/cas/{id}/expel",
    tag = "so",
    summary = "R13: expel a CA (final)",
    params(("id" = String, Path)),
    request_body = Reason,
    responses((status = 201, body = Done), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R13: final; the CA's later commands are refused and logged, earlier issuances stand.
pub(super) async fn expel(
    open: Open,
    caller: Authorized<AdminOnly>,
    PathParam(id): PathParam<String>,
    Body(b): Body<Reason>,
) -> Result<impl IntoResponse, Problem> {
    admin_command(
        &open,
        &caller,
        Command::ExpelCa { ca: ca_id("id", &id)?, reason: b.reason, violations: b.violations },
    )
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ZoneBody {
    ca: String,
    commune: String,
}

#[utoipa::path(
    post,
    path = "/v1/zones",
    tag = "so",
    summary = "R14: assign a commune to a CA",
    request_body = ZoneBody,
    responses((status = 201, body = Done), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub(super) async fn zone(
    open: Open,
    caller: Authorized<AdminOnly>,
    Body(b): Body<ZoneBody>,
) -> Result<impl IntoResponse, Problem> {
    admin_command(&open, &caller, Command::AssignZone { ca: ca_id("ca", &b.ca)?, commune: b.commune }).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CounterBody {
    counter: String,
    commune: String,
}

#[utoipa::path(
    post,
    path = "/v1/counters",
    tag = "so",
    summary = "R14: register a one-stop counter",
    request_body = CounterBody,
    responses((status = 201, body = Done), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub(super) async fn counter(
    open: Open,
    caller: Authorized<AdminOnly>,
    Body(b): Body<CounterBody>,
) -> Result<impl IntoResponse, Problem> {
    admin_command(&open, &caller, Command::RegisterCounter { counter: b.counter, commune: b.commune }).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BoothBody {
    booth: String,
    commune: String,
    ca: String,
    /// The Monday the CA's week at the booth starts.
    week_start: chrono::NaiveDate,
}

#[utoipa::path(
    post,
    path = "/v1/booths",
    tag = "so",
    summary = "R14: schedule a booth week",
    request_body = BoothBody,
    responses((status = 201, body = Done), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub(super) async fn booth(
    open: Open,
    caller: Authorized<AdminOnly>,
    Body(b): Body<BoothBody>,
) -> Result<impl IntoResponse, Problem> {
    let command = Command::ScheduleBooth {
        booth: b.booth,
        commune: b.commune,
        ca: ca_id("ca", &b.ca)?,
        week_start: b.week_start,
    };
    admin_command(&open, &caller, command).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ComplaintBody {
    against: String,
    /// issued_without_consent, pre_collected_data, duplicate_issuance, unauthorized_staff, other
    #[schema(value_type = String)]
    kind: ComplaintKind,
    citizen: Option<String>,
    text: String,
}

#[utoipa::path(
    post,
    path = "/v1/complaints",
    tag = "portal",
    summary = "R13: file a complaint",
    request_body = ComplaintBody,
    responses((status = 201, body = Done), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R13: a complaint from a citizen (through the portal) or the Sở.
pub(super) async fn complaint(
    open: Open,
    caller: Authorized<PortalOrAdmin>,
    Body(b): Body<ComplaintBody>,
) -> Result<impl IntoResponse, Problem> {
    let citizen = match &b.citizen {
        Some(c) => Some(cccd(&open, "citizen", c)?),
        None => None,
    };
    let command =
        Command::FileComplaint { against: ca_id("against", &b.against)?, kind: b.kind, citizen, text: b.text };
    admin_command(&open, &caller, command).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Resolution {
    upheld: bool,
    /// The events the Sở checked the complaint against (from the audit trail).
    #[serde(default)]
    #[schema(value_type = Vec<u64>)]
    checked: Vec<Seq>,
    note: String,
}

#[utoipa::path(
    post,
    path = "/v1/complaints/{id}/resolve",
    tag = "so",
    summary = "R13: resolve a complaint",
    params(("id" = u64, Path)),
    request_body = Resolution,
    responses((status = 201, body = Done), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R13: an upheld complaint publishes a violation.
pub(super) async fn resolve(
    open: Open,
    caller: Authorized<AdminOnly>,
    PathParam(id): PathParam<u64>,
    Body(b): Body<Resolution>,
) -> Result<impl IntoResponse, Problem> {
    admin_command(
        &open,
        &caller,
        Command::ResolveComplaint { complaint: id, upheld: b.upheld, checked: b.checked, note: b.note },
    )
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ViolationBody {
    ca: String,
    /// issued_without_consent, pre_collected_data, duplicate_issuance, unauthorized_staff, other
    #[schema(value_type = String)]
    kind: ComplaintKind,
    complaint: Option<u64>,
    description: String,
    #[serde(default)]
    #[schema(value_type = Vec<u64>)]
    evidence: Vec<Seq>,
}

#[utoipa::path(
    post,
    path = "/v1/violations",
    tag = "so",
    summary = "R13: log a violation",
    request_body = ViolationBody,
    responses((status = 201, body = Done), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub(super) async fn violation(
    open: Open,
    caller: Authorized<AdminOnly>,
    Body(b): Body<ViolationBody>,
) -> Result<impl IntoResponse, Problem> {
    let command = Command::LogViolation {
        ca: ca_id("ca", &b.ca)?,
        kind: b.kind,
        complaint: b.complaint,
        description: b.description,
        evidence: b.evidence,
    };
    admin_command(&open, &caller, command).await
}

#[utoipa::path(
    get,
    path = "/v1/violations",
    tag = "public",
    summary = "R13: published violations",
    responses((status = 200, body = Vec<projections::compliance::Published>), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json"))
)]
/// R13: violations are public.
pub(super) async fn violations(open: Open) -> impl IntoResponse {
    Json(open.get().projections.compliance.read(|c| c.violations.clone()))
}
