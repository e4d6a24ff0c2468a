//! The Sở's referee actions (R13, R14) and complaints (portal and Sở).

use super::{Body, PathParam, Receipt, ca_id, cccd, receipt, submit};
use crate::problem::Problem;
use crate::{AppState, Caller, Open};
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

#[derive(Serialize)]
struct Done {
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

fn admin(caller: &Caller) -> Result<(), Problem> {
    caller.require(&["admin"]).map(|_| ())
}

async fn list_cas(open: Open) -> Result<impl IntoResponse, Problem> {
    Ok(Json(directory::cas(&open.get().store).map_err(|e| Problem::internal("reading CAs", e))?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaBody {
    ca: String,
    name: String,
    app_name: String,
}

async fn register_ca(open: Open, caller: Caller, Body(b): Body<CaBody>) -> Result<impl IntoResponse, Problem> {
    admin(&caller)?;
    admin_command(&open, &caller, Command::RegisterCa { ca: ca_id("ca", &b.ca)?, name: b.name, app_name: b.app_name })
        .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: String,
    #[serde(default)]
    violations: Vec<Seq>,
}

async fn suspend(
    open: Open,
    caller: Caller,
    PathParam(id): PathParam<String>,
    Body(b): Body<Reason>,
) -> Result<impl IntoResponse, Problem> {
    admin(&caller)?;
    admin_command(&open, &caller, Command::SuspendCa { ca: ca_id("id", &id)?, reason: b.reason }).await
}

async fn reinstate(open: Open, caller: Caller, PathParam(id): PathParam<String>) -> Result<impl IntoResponse, Problem> {
    admin(&caller)?;
    admin_command(&open, &caller, Command::ReinstateCa { ca: ca_id("id", &id)? }).await
}

/// R13: final; the CA's later commands are refused and logged, earlier issuances stand.
async fn expel(
    open: Open,
    caller: Caller,
    PathParam(id): PathParam<String>,
    Body(b): Body<Reason>,
) -> Result<impl IntoResponse, Problem> {
    admin(&caller)?;
    admin_command(
        &open,
        &caller,
        Command::ExpelCa { ca: ca_id("id", &id)?, reason: b.reason, violations: b.violations },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneBody {
    ca: String,
    commune: String,
}

async fn zone(open: Open, caller: Caller, Body(b): Body<ZoneBody>) -> Result<impl IntoResponse, Problem> {
    admin(&caller)?;
    admin_command(&open, &caller, Command::AssignZone { ca: ca_id("ca", &b.ca)?, commune: b.commune }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CounterBody {
    counter: String,
    commune: String,
}

async fn counter(open: Open, caller: Caller, Body(b): Body<CounterBody>) -> Result<impl IntoResponse, Problem> {
    admin(&caller)?;
    admin_command(&open, &caller, Command::RegisterCounter { counter: b.counter, commune: b.commune }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BoothBody {
    booth: String,
    commune: String,
    ca: String,
    /// The Monday the CA's week at the booth starts.
    week_start: chrono::NaiveDate,
}

async fn booth(open: Open, caller: Caller, Body(b): Body<BoothBody>) -> Result<impl IntoResponse, Problem> {
    admin(&caller)?;
    let command = Command::ScheduleBooth {
        booth: b.booth,
        commune: b.commune,
        ca: ca_id("ca", &b.ca)?,
        week_start: b.week_start,
    };
    admin_command(&open, &caller, command).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComplaintBody {
    against: String,
    /// issued_without_consent, pre_collected_data, duplicate_issuance, unauthorized_staff, other
    kind: ComplaintKind,
    citizen: Option<String>,
    text: String,
}

/// R13: a complaint from a citizen (through the portal) or the Sở.
async fn complaint(open: Open, caller: Caller, Body(b): Body<ComplaintBody>) -> Result<impl IntoResponse, Problem> {
    caller.require(&["portal", "admin"])?;
    let citizen = match &b.citizen {
        Some(c) => Some(cccd(&open, "citizen", c)?),
        None => None,
    };
    let command =
        Command::FileComplaint { against: ca_id("against", &b.against)?, kind: b.kind, citizen, text: b.text };
    admin_command(&open, &caller, command).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Resolution {
    upheld: bool,
    /// The events the Sở checked the complaint against (from the audit trail).
    #[serde(default)]
    checked: Vec<Seq>,
    note: String,
}

/// R13: an upheld complaint publishes a violation.
async fn resolve(
    open: Open,
    caller: Caller,
    PathParam(id): PathParam<u64>,
    Body(b): Body<Resolution>,
) -> Result<impl IntoResponse, Problem> {
    admin(&caller)?;
    admin_command(
        &open,
        &caller,
        Command::ResolveComplaint { complaint: id, upheld: b.upheld, checked: b.checked, note: b.note },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ViolationBody {
    ca: String,
    /// issued_without_consent, pre_collected_data, duplicate_issuance, unauthorized_staff, other
    kind: ComplaintKind,
    complaint: Option<u64>,
    description: String,
    #[serde(default)]
    evidence: Vec<Seq>,
}

async fn violation(open: Open, caller: Caller, Body(b): Body<ViolationBody>) -> Result<impl IntoResponse, Problem> {
    admin(&caller)?;
    let command = Command::LogViolation {
        ca: ca_id("ca", &b.ca)?,
        kind: b.kind,
        complaint: b.complaint,
        description: b.description,
        evidence: b.evidence,
    };
    admin_command(&open, &caller, command).await
}

/// R13: violations are public.
async fn violations(open: Open) -> impl IntoResponse {
    Json(open.get().projections.compliance.read(|c| c.violations.clone()))
}
