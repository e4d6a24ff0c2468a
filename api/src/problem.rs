//! Every error as `application/problem+json` (RFC 9457) with a stable `type` per error, so
//! a CA integrator can match on it. No input produces a 500: internal failures are the
//! registry's (503 when retrying may help), never a panic.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::SubmitError;
use commands::domain::Rejection;
use commands::registrar::CommandError;
use serde::Serialize;
use serde_json::{Value, json};

/// Where the `type` URIs point; each slug is documented in the README's error table.
pub const TYPE_BASE: &str = "https://kyso.example/problems/";

#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub slug: &'static str,
    pub detail: String,
    /// Extra members (e.g. who holds the citizen, for a 409).
    pub extra: Value,
    pub retry_after: Option<u32>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &'static str, detail: impl Into<String>) -> Self {
        Self { status, slug, detail: detail.into(), extra: Value::Null, retry_after: None }
    }

    pub fn with(mut self, extra: Value) -> Self {
        self.extra = extra;
        self
    }

    pub fn bad_request(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, slug, detail)
    }

    pub fn invalid(field: &str, detail: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", format!("field `{field}`: {detail}"))
            .with(json!({ "field": field }))
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn too_many_requests(slug: &'static str, detail: impl Into<String>, retry_after: u32) -> Self {
        Self { retry_after: Some(retry_after), ..Self::new(StatusCode::TOO_MANY_REQUESTS, slug, detail) }
    }

    pub fn unavailable(slug: &'static str, detail: impl Into<String>, retry_after: u32) -> Self {
        Self { retry_after: Some(retry_after), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, slug, detail) }
    }

    /// A failure of the registry itself, logged in full; the caller learns only that it
    /// may retry.
    pub fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!("{what}: {e}");
        Self::unavailable("registry-unavailable", format!("{what}; nothing was changed; retry later"), 5)
    }
}

/// The members every problem has; some add more (`holder` on a 409, `field` on a 422).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProblemBody {
    r#type: String,
    title: String,
    status: u16,
    detail: String,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = serde_json::to_value(ProblemBody {
            r#type: format!("{TYPE_BASE}{}", self.slug),
            title: self.status.canonical_reason().unwrap_or("error").to_string(),
            status: self.status.as_u16(),
            detail: self.detail,
        })
        .expect("a problem serialises");
        if let (Value::Object(b), Value::Object(extra)) = (&mut body, self.extra) {
            b.extend(extra);
        }
        let mut res = (self.status, axum::Json(body)).into_response();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(s) = self.retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        // The rest of a too-large body is never read, so the server drops the connection
        // after answering; saying so keeps a keep-alive client from sending its next request
        // down a connection that is closing (HTTP/2 strips the header).
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}

impl From<Rejection> for Problem {
    fn from(r: Rejection) -> Self {
        let status = match &r {
            Rejection::AlreadyIssued { .. }
            | Rejection::CaAlreadyRegistered(_)
            | Rejection::DemandAlreadyOpen { .. }
            | Rejection::DemandNotOpen { .. }
            | Rejection::DemandNotDue { .. }
            | Rejection::ComplaintAlreadyResolved(_)
            | Rejection::NothingToSwitch
            | Rejection::SwitchToSameCa
            | Rejection::NoActiveCa => StatusCode::CONFLICT,
            Rejection::CaNotActive { .. }
            | Rejection::StaffNotAuthorized { .. }
            | Rejection::NotYourDemand { .. }
            | Rejection::OutsideZone { .. } => StatusCode::FORBIDDEN,
            Rejection::UnknownCa(_)
            | Rejection::UnknownDemand(_)
            | Rejection::UnknownStaff(_)
            | Rejection::UnknownComplaint(_) => StatusCode::NOT_FOUND,
            Rejection::ActivatedInFuture { .. }
            | Rejection::TooYoung { .. }
            | Rejection::ChannelClosed { .. }
            | Rejection::UnknownCommune(_)
            | Rejection::IdempotencyKeyReused { .. }
            | Rejection::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let extra = match &r {
            Rejection::AlreadyIssued { by_ca, first_recorded_seq, recorded_at } => json!({
                "holder": { "ca": by_ca, "first_recorded_seq": first_recorded_seq, "recorded_at": recorded_at }
            }),
            Rejection::Invalid { field, .. } => json!({ "field": field }),
            Rejection::DemandAlreadyOpen { demand } => json!({ "demand": demand }),
            _ => Value::Null,
        };
        Problem::new(status, r.code(), r.to_string()).with(extra)
    }
}

impl From<SubmitError> for Problem {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Busy { .. } => Problem::unavailable("busy", e.to_string(), 1),
            SubmitError::Storage(_) => {
                tracing::error!("{e}");
                Problem::unavailable("storage-unavailable", e.to_string(), 5)
            }
            SubmitError::Stopped => Problem::unavailable("shutting-down", e.to_string(), 5),
        }
    }
}

impl From<CommandError> for Problem {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Rejected { rejection, logged_seq } => {
                let mut p = Problem::from(rejection);
                if let Some(seq) = logged_seq {
                    match &mut p.extra {
                        Value::Object(extra) => drop(extra.insert("refusal_logged_at_seq".into(), json!(seq))),
                        none => *none = json!({ "refusal_logged_at_seq": seq }),
                    }
                }
                p
            }
            CommandError::Storage(e) => Problem::internal("the registry could not write", e),
        }
    }
}
