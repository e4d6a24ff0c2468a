//! What CA services, the citizen portal and anyone with a QR code call.

use super::{Body, PathParam, QueryParams, Receipt, cccd, current_year, idempotency_key, opt_ca_id, receipt, submit};
use crate::problem::Problem;
use crate::{AppState, Authorized, CaOnly, CaOrAdmin, Caller, LookupRoles, Open, PortalOrAdmin};
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json};
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use commands::domain::event::Place;
use commands::domain::{Channel, Command, DemandMode, Event, IssuanceStatus, RecordIssuance, Segment};
use event_store::{RegistryTime, Seq};
use projections::citizen::{self, CitizenView};
use projections::demands::Stage;
use projections::directory;
use serde::{Deserialize, Serialize};

pub fn router(qr_checks: crate::ratelimit::PerClient) -> Router<AppState> {
    Router::new()
        .route("/citizens/{cccd}", get(lookup))
        .route("/issuances", post(record))
        .route("/issuances/switch", post(switch))
        .route("/imports", post(import))
        .route("/demands", get(demands).post(register_demand))
        .route("/demands/{id}/ack", post(ack_demand))
        .route("/staff", get(list_staff).post(register_staff))
        .route("/staff/{id}", delete(revoke_staff))
        .route(
            "/staff/verify/{token}",
            get(verify_staff).layer(axum::middleware::from_fn_with_state(qr_checks, crate::ratelimit::limit)),
        )
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct LookupQuery {
    /// The staff member doing the lookup in the field (R11), if any.
    staff: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct LookupAnswer {
    citizen: String,
    #[serde(flatten)]
    view: CitizenView,
    /// Where this lookup was recorded (R2); absent for the Sở and auditors, whose reads are
    /// not CA lookups.
    #[schema(value_type = Option<u64>)]
    lookup_seq: Option<Seq>,
}

#[utoipa::path(
    get,
    path = "/v1/citizens/{cccd}",
    tag = "ca",
    summary = "R2: look a citizen up (recorded for CAs)",
    params(("cccd" = String, Path, description = "12-digit CCCD"), LookupQuery),
    responses((status = 200, body = LookupAnswer), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R2: a CA's lookup is recorded, then answered with the view as of its place in the log,
/// which includes every write acknowledged before it. Others' lookups ask the writer for
/// the view, which includes the same and records nothing.
pub(super) async fn lookup(
    open: Open,
    caller: Authorized<LookupRoles>,
    PathParam(id): PathParam<String>,
    QueryParams(q): QueryParams<LookupQuery>,
) -> Result<Json<LookupAnswer>, Problem> {
    let citizen = cccd(&open, "cccd", &id)?;
    let (lookup_seq, view) = match caller.ca() {
        Ok(ca) => {
            let command = Command::LookUpCitizen { citizen, ca: ca.clone(), staff: q.staff };
            let accepted = submit(&open, &caller, command, None).await?;
            // The view as the lookup saw it, durable with the lookup's batch.
            let answer =
                accepted.answer.ok_or_else(|| Problem::internal("a recorded lookup", "no view was rendered"))?;
            let view = citizen::decode(answer.as_deref()).map_err(|e| Problem::internal("a recorded lookup", e))?;
            (accepted.seqs.map(|(s, _)| s), view)
        }
        Err(_) => (None, open.get().citizen_view(citizen).await?),
    };
    let view = view.unwrap_or(CitizenView { issued: None, open_demand: None });
    Ok(Json(LookupAnswer { citizen: citizen.to_string(), view, lookup_seq }))
}

/// Where the issuance happened (R14): the commune itself, a one-stop counter or a booth.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum PlaceBody {
    #[default]
    Commune,
    Counter {
        id: String,
    },
    Booth {
        id: String,
    },
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct IssuanceBody {
    citizen: String,
    /// app, ca_office, door_to_door, demand, one_stop_counter, booth
    #[schema(value_type = String)]
    channel: Channel,
    /// state_agency, socio_political, public_service, student, sme_worker, adult_citizen
    #[schema(value_type = String)]
    segment: Segment,
    /// GSO commune code.
    commune: String,
    #[serde(default)]
    place: PlaceBody,
    /// active (default) or technical_error (R5)
    #[serde(default = "active")]
    #[schema(value_type = String)]
    status: IssuanceStatus,
    staff: Option<u64>,
    serial: Option<String>,
    /// When the certificate was activated (RFC 3339); never after the registry's time (R8).
    activated_at: DateTime<Utc>,
}

fn active() -> IssuanceStatus {
    IssuanceStatus::Active
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct IssuanceAnswer {
    #[schema(value_type = u64)]
    seq: Seq,
    citizen: String,
    #[schema(value_type = String, format = DateTime)]
    free_until: RegistryTime,
    late: bool,
    /// Set when this answer repeats the first one for the same Idempotency-Key.
    replayed: bool,
    receipt: Option<Receipt>,
}

async fn issuance(
    open: Open,
    caller: Caller,
    headers: HeaderMap,
    body: IssuanceBody,
    switch: bool,
) -> Result<impl IntoResponse, Problem> {
    let ca = caller.ca()?.clone();
    let key = idempotency_key(&headers)?;
    let citizen = cccd(&open, "citizen", &body.citizen)?;
    if body.serial.as_ref().is_some_and(|s| s.len() > 64) {
        return Err(Problem::invalid("serial", "at most 64 characters"));
    }
    let place = match body.place {
        PlaceBody::Commune => Place::Commune,
        PlaceBody::Counter { id } => Place::Counter(id),
        PlaceBody::Booth { id } => Place::Booth(id),
    };
    let cmd = Box::new(RecordIssuance {
        citizen,
        ca,
        channel: body.channel,
        segment: body.segment,
        commune: body.commune,
        place,
        status: body.status,
        staff: body.staff,
        serial: body.serial,
        activated_at: RegistryTime(body.activated_at.timestamp_millis()),
    });
    let command = if switch { Command::SwitchCa(cmd) } else { Command::RecordIssuance(cmd) };
    let accepted = submit(&open, &caller, command, key).await?;
    let Some(Event::IssuanceRecorded(i)) = accepted.events.first() else {
        return Err(Problem::internal("recording an issuance", "the command produced no issuance"));
    };
    let answer = IssuanceAnswer {
        seq: accepted.seqs.map(|(s, _)| s).unwrap_or_default(),
        citizen: i.citizen.to_string(),
        free_until: i.free_until,
        late: i.late,
        replayed: accepted.replayed,
        receipt: receipt(&open, &accepted)?,
    };
    let status = if accepted.replayed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(answer)))
}

#[utoipa::path(
    post,
    path = "/v1/issuances",
    tag = "ca",
    summary = "R1–R5, R18: record an issuance",
    params(("Idempotency-Key" = Option<String>, Header, description = "retry safely with the same key")),
    request_body = IssuanceBody,
    responses((status = 201, body = IssuanceAnswer), (status = 200, description = "a replay of the first answer for this Idempotency-Key", body = IssuanceAnswer), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R1–R5, R18: record an issuance; 409 names the CA that holds the citizen.
pub(super) async fn record(
    open: Open,
    caller: Authorized<CaOnly>,
    headers: HeaderMap,
    Body(body): Body<IssuanceBody>,
) -> Result<impl IntoResponse, Problem> {
    issuance(open, caller.0, headers, body, false).await
}

#[utoipa::path(
    post,
    path = "/v1/issuances/switch",
    tag = "ca",
    summary = "R7: the citizen switches to this CA",
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body = IssuanceBody,
    responses((status = 201, body = IssuanceAnswer), (status = 200, body = IssuanceAnswer), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R7: the citizen switches to this CA; `free_until` stays the first CA's.
pub(super) async fn switch(
    open: Open,
    caller: Authorized<CaOnly>,
    headers: HeaderMap,
    Body(body): Body<IssuanceBody>,
) -> Result<impl IntoResponse, Problem> {
    issuance(open, caller.0, headers, body, true).await
}

#[utoipa::path(
    post,
    path = "/v1/imports",
    tag = "ca",
    summary = "R6: import legacy issuances (CSV: cccd,issued_at,serial)",
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = commands::import::ImportReport), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R6: legacy issuances as CSV (`cccd,issued_at,serial`), one report line per failed row.
/// The body is read as it arrives and rows are recorded a batch at a time, so a large file
/// neither waits for its last byte nor sits whole in memory.
pub(super) async fn import(
    open: Open,
    caller: Authorized<CaOnly>,
    body: axum::body::Body,
) -> Result<impl IntoResponse, Problem> {
    use futures::StreamExt;
    let ca = caller.ca()?.clone();
    let meta = event_store::Metadata { actor: caller.0.0.to_string(), ..Default::default() };
    let max_bytes = open.0.limits.import_bytes;
    let mut import =
        commands::import::StreamingImport::new(super::writer(&open)?, meta, ca, current_year(&open), max_bytes);
    let mut stream = body.into_data_stream();
    while !import.stopped() {
        match stream.next().await {
            Some(Ok(chunk)) => import.feed(&chunk).await?,
            Some(Err(e)) => {
                return Err(Problem::bad_request(
                    "bad-body",
                    format!(
                        "the upload broke off ({e}); rows read before that may be recorded: send the file again (re-importing is idempotent)"
                    ),
                ));
            }
            None => break,
        }
    }
    import.end();
    if let Some(e) = import.refused() {
        return Err(Problem::bad_request("not-a-legacy-file", e.problem.clone()));
    }
    Ok(Json(import.finish().await?))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DemandQuery {
    /// open, acknowledged, expired, fulfilled
    #[param(value_type = Option<String>)]
    stage: Option<Stage>,
}

#[utoipa::path(
    get,
    path = "/v1/demands",
    tag = "ca",
    summary = "R12: demands (a CA sees its own)",
    params(DemandQuery),
    responses((status = 200, body = Vec<projections::demands::BoardLine>), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R12: a CA sees its own demands; the Sở sees all.
pub(super) async fn demands(
    open: Open,
    caller: Authorized<CaOrAdmin>,
    QueryParams(q): QueryParams<DemandQuery>,
) -> Result<impl IntoResponse, Problem> {
    let ca = caller.ca().ok().cloned();
    let r = open.get();
    let now = r.clock.now();
    Ok(Json(r.projections.demands.read(|b| b.lines(ca.as_ref(), q.stage, now))))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DemandBody {
    citizen: String,
    /// home or remote
    #[schema(value_type = String)]
    mode: DemandMode,
    phone: String,
    commune: String,
    /// Leave out to let the registry assign the zone's CA or the next in rotation (R19).
    chosen_ca: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct DemandAnswer {
    demand: u64,
    ca: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<RegistryTime>,
    receipt: Option<Receipt>,
}

#[utoipa::path(
    post,
    path = "/v1/demands",
    tag = "portal",
    summary = "R12: register a citizen's demand",
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body = DemandBody,
    responses((status = 201, body = DemandAnswer), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R12: the portal registers a citizen's demand.
pub(super) async fn register_demand(
    open: Open,
    caller: Authorized<PortalOrAdmin>,
    headers: HeaderMap,
    Body(body): Body<DemandBody>,
) -> Result<impl IntoResponse, Problem> {
    let key = idempotency_key(&headers)?;
    let citizen = cccd(&open, "citizen", &body.citizen)?;
    let chosen_ca = opt_ca_id("chosen_ca", body.chosen_ca.as_deref())?;
    let command =
        Command::RegisterDemand { citizen, mode: body.mode, phone: body.phone, commune: body.commune, chosen_ca };
    let accepted = submit(&open, &caller, command, key).await?;
    let mut answer = DemandAnswer { demand: 0, ca: None, expires_at: None, receipt: receipt(&open, &accepted)? };
    for e in &accepted.events {
        match e {
            Event::DemandRegistered { demand, chosen_ca, expires_at, .. } => {
                answer.demand = *demand;
                answer.ca = chosen_ca.as_ref().map(|c| c.to_string());
                answer.expires_at = Some(*expires_at);
            }
            Event::CaAssigned { ca, .. } => answer.ca = Some(ca.to_string()),
            _ => {}
        }
    }
    Ok((StatusCode::CREATED, Json(answer)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct DemandAcknowledged {
    demand: u64,
    acknowledged: bool,
    /// None when the demand was already acknowledged (nothing new was recorded).
    receipt: Option<Receipt>,
}

#[utoipa::path(
    post,
    path = "/v1/demands/{id}/ack",
    tag = "ca",
    summary = "R12: acknowledge a demand",
    params(("id" = u64, Path)),
    responses((status = 200, body = DemandAcknowledged), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R12: the CA takes the demand on.
pub(super) async fn ack_demand(
    open: Open,
    caller: Authorized<CaOnly>,
    PathParam(id): PathParam<u64>,
) -> Result<impl IntoResponse, Problem> {
    let ca = caller.ca()?.clone();
    let accepted = submit(&open, &caller, Command::AcknowledgeDemand { demand: id, ca }, None).await?;
    Ok(Json(DemandAcknowledged { demand: id, acknowledged: true, receipt: receipt(&open, &accepted)? }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct StaffBody {
    full_name: String,
    birth_year: u16,
    position: String,
    photo_ref: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct StaffRegistered {
    staff: Option<u64>,
    /// Shown this once; the registry keeps only its hash.
    qr_token: String,
    receipt: Option<Receipt>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct StaffRevoked {
    staff: u64,
    revoked: bool,
    receipt: Option<Receipt>,
}

#[utoipa::path(
    post,
    path = "/v1/staff",
    tag = "ca",
    summary = "R11: register a field staff member (QR token returned once)",
    request_body = StaffBody,
    responses((status = 201, body = StaffRegistered), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R11: a CA registers a field staff member; the QR token is in this answer only.
pub(super) async fn register_staff(
    open: Open,
    caller: Authorized<CaOnly>,
    Body(body): Body<StaffBody>,
) -> Result<impl IntoResponse, Problem> {
    let ca = caller.ca()?.clone();
    for (field, value) in [("full_name", &body.full_name), ("position", &body.position), ("photo_ref", &body.photo_ref)]
    {
        if value.trim().is_empty() || value.len() > 256 {
            return Err(Problem::invalid(field, "must be 1 to 256 characters"));
        }
    }
    let token = crate::auth::new_token();
    let command = Command::RegisterStaff {
        ca,
        full_name: body.full_name,
        birth_year: body.birth_year,
        position: body.position,
        photo_ref: body.photo_ref,
        token_hash: crate::auth::hash(&token),
    };
    let accepted = submit(&open, &caller, command, None).await?;
    let staff = accepted.events.iter().find_map(|e| match e {
        Event::StaffRegistered { staff, .. } => Some(*staff),
        _ => None,
    });
    Ok((StatusCode::CREATED, Json(StaffRegistered { staff, qr_token: token, receipt: receipt(&open, &accepted)? })))
}

#[utoipa::path(
    get,
    path = "/v1/staff",
    tag = "ca",
    summary = "R11: this CA's staff",
    responses((status = 200, body = Vec<projections::directory::StaffCard>), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub(super) async fn list_staff(open: Open, caller: Authorized<CaOnly>) -> Result<impl IntoResponse, Problem> {
    let ca = caller.ca()?;
    Ok(Json(directory::staff_of(&open.get().store, ca).map_err(|e| Problem::internal("reading staff", e))?))
}

#[utoipa::path(
    delete,
    path = "/v1/staff/{id}",
    tag = "ca",
    summary = "R11: revoke a staff member",
    params(("id" = u64, Path)),
    responses((status = 200, body = StaffRevoked), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R11: revoke a staff member's badge; the next QR check fails.
pub(super) async fn revoke_staff(
    open: Open,
    caller: Authorized<CaOnly>,
    PathParam(id): PathParam<u64>,
) -> Result<impl IntoResponse, Problem> {
    let ca = caller.ca()?.clone();
    let accepted = submit(&open, &caller, Command::RevokeStaff { ca, staff: id }, None).await?;
    Ok(Json(StaffRevoked { staff: id, revoked: true, receipt: receipt(&open, &accepted)? }))
}

#[utoipa::path(
    get,
    path = "/v1/staff/verify/{token}",
    tag = "public",
    summary = "R11: check a staff QR token",
    params(("token" = String, Path)),
    responses((status = 200, body = projections::directory::Verification), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json"))
)]
/// R11: anyone scanning a QR code learns whether its bearer may act for the CA now.
pub(super) async fn verify_staff(
    open: Open,
    PathParam(token): PathParam<String>,
) -> Result<impl IntoResponse, Problem> {
    if token.len() > 128 {
        return Err(Problem::bad_request("bad-path", "a QR token is at most 128 characters"));
    }
    let v = directory::verify(&open.get().store, &crate::auth::hash(&token))
        .map_err(|e| Problem::internal("checking a QR token", e))?;
    Ok(Json(v))
}
