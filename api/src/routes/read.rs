//! Reports (reporters, Sở, auditors), the audit trail and the raw log (auditors, Sở).
//! Reads never go through the sequencer.

use super::{PathParam, QueryParams, ca_id, cccd, opt_ca_id, today};
use crate::problem::Problem;
use crate::{AppState, Auditors, Authorized, Open, Readers};
use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use chrono::NaiveDate;
use commands::domain::{Campaign, Channel, Segment};
use event_store::Seq;
use projections::audit::{self, Subject, TrailEntry};
use projections::counts::{Dim, Filter};
use projections::demands::Stage;
use serde::{Deserialize, Serialize};
use utoipa::openapi::{RefOr, schema::Schema};
use utoipa::{PartialSchema, ToSchema};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/campaign", get(campaign))
        .route("/reports/counts", get(counts))
        .route("/reports/rollup", get(rollup))
        .route("/reports/targets", get(targets))
        .route("/reports/compliance", get(compliance))
        .route("/reports/demands", get(demand_report))
        .route("/reports/booths", get(booths))
        .route("/reports/explain", get(explain))
        .route("/audit/citizens/{cccd}", get(citizen_trail))
        .route("/audit/cas/{id}", get(ca_trail))
        .route("/events", get(events))
}

const MAX_PAGE: usize = 10_000;

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct CountsQuery {
    ca: Option<String>,
    district: Option<String>,
    commune: Option<String>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    /// A single day (same as from = to = day).
    day: Option<NaiveDate>,
    #[param(value_type = Option<String>)]
    channel: Option<Channel>,
    #[param(value_type = Option<String>)]
    segment: Option<Segment>,
    /// Comma-separated: ca, district, commune, day, channel, segment, place.
    group_by: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

impl CountsQuery {
    fn filter(&self) -> Result<Filter, Problem> {
        Ok(Filter {
            ca: opt_ca_id("ca", self.ca.as_deref())?,
            district: self.district.clone(),
            commune: self.commune.clone(),
            from: self.day.or(self.from),
            to: self.day.or(self.to),
            channel: self.channel,
            segment: self.segment,
        })
    }

    fn dims(&self) -> Result<Vec<Dim>, Problem> {
        let Some(g) = &self.group_by else { return Ok(Vec::new()) };
        g.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                serde_json::from_value(serde_json::Value::String(s.trim().to_string())).map_err(|_| {
                    Problem::invalid(
                        "group_by",
                        format!("{s:?} is not one of ca, district, commune, day, channel, segment, place"),
                    )
                })
            })
            .collect()
    }
}

/// `format=json` (the default) or `format=csv`; anything else is a 422.
fn wants_csv(format: Option<&str>) -> Result<bool, Problem> {
    match format {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => Err(Problem::invalid("format", format!("{other:?} is not json or csv"))),
    }
}

fn csv_response(header_row: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Result<Response, Problem> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| Problem::internal("writing CSV", e);
    w.write_record(header_row).map_err(fail)?;
    for r in rows {
        w.write_record(&r).map_err(fail)?;
    }
    let bytes = w.into_inner().map_err(|e| Problem::internal("writing CSV", e))?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], bytes).into_response())
}

#[derive(Serialize)]
pub(super) struct CampaignInfo<'a> {
    #[serde(flatten)]
    campaign: &'a Campaign,
    /// The province's districts (GSO codes) with their names and communes: what reports
    /// group by and what a demand's `commune` must be.
    districts: Vec<DistrictInfo>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct DistrictInfo {
    code: String,
    name: String,
    communes: std::collections::BTreeMap<String, String>,
}

/// The answer is one object: the campaign's fields and `districts` side by side. A derived
/// schema would be `allOf` the campaign's schema and `districts`, which no answer matches:
/// the campaign's schema forbids other fields (its TOML file must not carry unknown keys).
impl PartialSchema for CampaignInfo<'_> {
    fn schema() -> RefOr<Schema> {
        let mut campaign = <Campaign as PartialSchema>::schema();
        if let RefOr::T(Schema::Object(fields)) = &mut campaign {
            fields.properties.insert("districts".into(), <Vec<DistrictInfo> as PartialSchema>::schema());
            fields.required.push("districts".into());
        }
        campaign
    }
}

impl ToSchema for CampaignInfo<'_> {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <Campaign as ToSchema>::schemas(schemas);
        schemas.push((DistrictInfo::name().into(), DistrictInfo::schema()));
    }
}

#[utoipa::path(
    get,
    path = "/v1/campaign",
    tag = "public",
    summary = "The campaign's rules, phases, targets, districts and communes",
    responses((status = 200, body = CampaignInfo), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json"))
)]
/// The campaign this registry runs: public, so the portal can offer communes and the
/// dashboard can name districts.
pub(super) async fn campaign(open: Open) -> Response {
    let c = &open.get().campaign;
    let mut districts: std::collections::BTreeMap<String, DistrictInfo> = std::collections::BTreeMap::new();
    for (code, unit) in commands::domain::admin_units::communes_of(&c.province_code) {
        districts
            .entry(unit.district_code.clone())
            .or_insert_with(|| DistrictInfo {
                code: unit.district_code.clone(),
                name: unit.district_name.clone(),
                communes: Default::default(),
            })
            .communes
            .insert(code, unit.commune_name);
    }
    Json(CampaignInfo { campaign: c, districts: districts.into_values().collect() }).into_response()
}

#[utoipa::path(
    get,
    path = "/v1/reports/counts",
    tag = "reports",
    summary = "R14, R15, R18: counts, filtered and grouped",
    params(CountsQuery),
    responses((status = 200, description = "JSON, or CSV with format=csv", content((Vec<projections::counts::Row> = "application/json"), (String = "text/csv"))), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R14, R15, R18: issued certificates, filtered and grouped.
pub(super) async fn counts(
    open: Open,
    _caller: Authorized<Readers>,
    QueryParams(q): QueryParams<CountsQuery>,
) -> Result<Response, Problem> {
    let (filter, dims, csv) = (q.filter()?, q.dims()?, wants_csv(q.format.as_deref())?);
    let rows = open.get().projections.counts.read(|c| c.group_by(&filter, &dims));
    if csv {
        let names: Vec<String> = dims
            .iter()
            .map(|d| serde_json::to_value(d).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
            .collect();
        let mut header: Vec<&str> = names.iter().map(String::as_str).collect();
        header.extend(["issued", "technical_error", "late", "switched_in"]);
        return csv_response(
            &header,
            rows.into_iter().map(|r| {
                let mut v = r.group;
                v.extend(
                    [r.tally.issued, r.tally.technical_error, r.tally.late, r.tally.switched_in].map(|n| n.to_string()),
                );
                v
            }),
        );
    }
    Ok(Json(rows).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/reports/rollup",
    tag = "reports",
    summary = "R15: CA → commune → district → province",
    params(CountsQuery),
    responses((status = 200, body = projections::counts::Rollup), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R15: CA → commune → district → province.
pub(super) async fn rollup(
    open: Open,
    _caller: Authorized<Readers>,
    QueryParams(q): QueryParams<CountsQuery>,
) -> Result<Response, Problem> {
    let filter = q.filter()?;
    Ok(Json(open.get().projections.counts.read(|c| c.rollup(&filter))).into_response())
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct DateQuery {
    date: Option<NaiveDate>,
    format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/reports/targets",
    tag = "reports",
    summary = "R16: progress against targets",
    params(DateQuery),
    responses((status = 200, description = "JSON, or CSV with format=csv", content((projections::counts::Targets = "application/json"), (String = "text/csv"))), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R16: progress against the campaign's targets, as of a day (default today).
pub(super) async fn targets(
    open: Open,
    _caller: Authorized<Readers>,
    QueryParams(q): QueryParams<DateQuery>,
) -> Result<Response, Problem> {
    let r = open.get();
    let day = q.date.unwrap_or_else(|| today(&open));
    let t = r.projections.counts.read(|c| c.targets(&r.campaign, day));
    if wants_csv(q.format.as_deref())? {
        return csv_response(
            &["name", "target", "issued", "percent", "planned_by_now", "behind_by"],
            t.total.iter().chain(&t.segments).map(|p| {
                vec![
                    p.name.clone(),
                    p.target.to_string(),
                    p.issued.to_string(),
                    p.percent.to_string(),
                    p.planned_by_now.to_string(),
                    p.behind_by.to_string(),
                ]
            }),
        );
    }
    Ok(Json(t).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/reports/compliance",
    tag = "reports",
    summary = "R2, R4, R12, R13: CA compliance",
    responses((status = 200, body = Vec<projections::compliance::CaLine>), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R2, R4, R12, R13: how each CA keeps the rules.
pub(super) async fn compliance(open: Open, _caller: Authorized<Readers>) -> Result<impl IntoResponse, Problem> {
    Ok(Json(open.get().projections.compliance.read(|c| c.report())))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct DemandReportQuery {
    ca: Option<String>,
    #[param(value_type = Option<String>)]
    stage: Option<Stage>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct DemandReport {
    by_ca: std::collections::BTreeMap<String, std::collections::BTreeMap<Stage, u64>>,
    /// Counts only: reports carry no people (R9).
    open: usize,
    /// The open demands closest to their deadline, soonest first (at most 20), without the
    /// citizen: what the Sở chases CAs about.
    due_soon: Vec<DueLine>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct DueLine {
    demand: u64,
    ca: Option<String>,
    district: String,
    commune: String,
    expires_at: event_store::RegistryTime,
    time_left_ms: i64,
}

const DUE_SOON: usize = 20;

#[utoipa::path(
    get,
    path = "/v1/reports/demands",
    tag = "reports",
    summary = "R12: demands by CA and stage",
    params(DemandReportQuery),
    responses((status = 200, body = DemandReport), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R12: demands by CA and stage.
pub(super) async fn demand_report(
    open: Open,
    _caller: Authorized<Readers>,
    QueryParams(q): QueryParams<DemandReportQuery>,
) -> Result<impl IntoResponse, Problem> {
    let ca = opt_ca_id("ca", q.ca.as_deref())?;
    let r = open.get();
    let now = r.clock.now();
    Ok(Json(r.projections.demands.read(|b| {
        let open = b.lines(ca.as_ref(), Some(Stage::Open), now);
        let counted = match q.stage {
            None | Some(Stage::Open) => open.len(),
            Some(stage) => b.lines(ca.as_ref(), Some(stage), now).len(),
        };
        let mut due: Vec<DueLine> = open
            .into_iter()
            .map(|l| DueLine {
                demand: l.row.demand,
                ca: l.row.ca.map(|c| c.to_string()),
                district: l.row.district,
                commune: l.row.commune,
                expires_at: l.row.expires_at,
                time_left_ms: l.time_left_ms.unwrap_or(0),
            })
            .collect();
        due.sort_by_key(|d| (d.expires_at, d.demand));
        due.truncate(DUE_SOON);
        DemandReport { by_ca: b.summary(), open: counted, due_soon: due }
    })))
}

#[utoipa::path(
    get,
    path = "/v1/reports/booths",
    tag = "reports",
    summary = "R14: end-of-day booth report",
    params(DateQuery),
    responses((status = 200, description = "JSON, or CSV with format=csv", content((Vec<projections::counts::BoothLine> = "application/json"), (String = "text/csv"))), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R14: what each booth issued on a day (default today).
pub(super) async fn booths(
    open: Open,
    _caller: Authorized<Readers>,
    QueryParams(q): QueryParams<DateQuery>,
) -> Result<Response, Problem> {
    let r = open.get();
    let day = q.date.unwrap_or_else(|| today(&open));
    let lines = r.projections.counts.read(|c| c.booths(day));
    if wants_csv(q.format.as_deref())? {
        return csv_response(
            &["booth", "commune", "ca", "issued"],
            lines.into_iter().map(|l| vec![l.booth, l.commune, l.ca.to_string(), l.issued.to_string()]),
        );
    }
    Ok(Json(lines).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/reports/explain",
    tag = "audit",
    summary = "The events behind a count",
    params(CountsQuery),
    responses((status = 200, body = Explained), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// Every count traces back to events: the issuances behind a filter's total.
pub(super) async fn explain(
    open: Open,
    _caller: Authorized<Auditors>,
    QueryParams(q): QueryParams<CountsQuery>,
) -> Result<impl IntoResponse, Problem> {
    let filter = q.filter()?;
    let r = open.get();
    let seqs = audit::explain(&r.store, &r.projections.audit.key_prefix(), &filter)
        .map_err(|e| Problem::internal("explaining a count", e))?;
    let shown = &seqs[..seqs.len().min(MAX_PAGE)];
    let entries = audit::entries(&r.store, shown).map_err(|e| Problem::internal("reading the trail", e))?;
    Ok(Json(Explained { count: seqs.len(), events: entries }))
}

/// The issuances behind a count: all of them counted, the first page shown.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Explained {
    count: usize,
    /// At most the first 10,000, in seq order.
    events: Vec<TrailEntry>,
}

/// A trail, in seq order, as far as the audit index has read the log.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Trail {
    as_of_seq: Seq,
    events: Vec<TrailEntry>,
}

/// A page of the raw log, decoded.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct LogPage {
    last_seq: Seq,
    events: Vec<TrailEntry>,
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct Page {
    from_seq: Option<u64>,
    limit: Option<usize>,
}

impl Page {
    fn from(&self) -> Seq {
        Seq(self.from_seq.unwrap_or(1).max(1))
    }
    fn limit(&self) -> usize {
        self.limit.unwrap_or(1000).clamp(1, MAX_PAGE)
    }
}

async fn trail(open: &Open, subject: Subject, page: &Page) -> Result<Response, Problem> {
    let r = open.get();
    let seqs = audit::seqs(&r.store, &r.projections.audit.key_prefix(), &subject, page.from(), page.limit())
        .map_err(|e| Problem::internal("reading the audit index", e))?;
    let entries = audit::entries(&r.store, &seqs).map_err(|e| Problem::internal("reading the trail", e))?;
    let caught_up_to = r.projections.audit.applied();
    Ok(Json(Trail { as_of_seq: caught_up_to, events: entries }).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/audit/citizens/{cccd}",
    tag = "audit",
    summary = "R13: a citizen's trail",
    params(("cccd" = String, Path), Page),
    responses((status = 200, body = Trail), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R13: everything that touched a citizen, in seq order.
pub(super) async fn citizen_trail(
    open: Open,
    _caller: Authorized<Auditors>,
    PathParam(id): PathParam<String>,
    QueryParams(page): QueryParams<Page>,
) -> Result<Response, Problem> {
    let citizen = cccd(&open, "cccd", &id)?;
    trail(&open, Subject::Citizen(citizen), &page).await
}

#[utoipa::path(
    get,
    path = "/v1/audit/cas/{id}",
    tag = "audit",
    summary = "R13: a CA's trail",
    params(("id" = String, Path), Page),
    responses((status = 200, body = Trail), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// R13: everything a CA did or had done to it, in seq order.
pub(super) async fn ca_trail(
    open: Open,
    _caller: Authorized<Auditors>,
    PathParam(id): PathParam<String>,
    QueryParams(page): QueryParams<Page>,
) -> Result<Response, Problem> {
    let ca = ca_id("id", &id)?;
    trail(&open, Subject::Ca(ca), &page).await
}

#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "audit",
    summary = "The raw log, decoded",
    params(Page),
    responses((status = 200, body = LogPage), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// The raw log, decoded, a page at a time.
pub(super) async fn events(
    open: Open,
    _caller: Authorized<Auditors>,
    QueryParams(page): QueryParams<Page>,
) -> Result<Response, Problem> {
    let r = open.get();
    let seqs: Vec<Seq> = (page.from().0..=r.store.last_seq().0).take(page.limit()).map(Seq).collect();
    let entries = audit::entries(&r.store, &seqs).map_err(|e| Problem::internal("reading the log", e))?;
    Ok(Json(LogPage { last_seq: r.store.last_seq(), events: entries }).into_response())
}
