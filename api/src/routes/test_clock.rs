//! `POST /v1/test/clock` (admin), only under `kyso serve --test-clock`: moves the registry's
//! clock forward so tests and demos can cross a 48 h demand deadline or a campaign phase
//! without waiting. Never backwards: the registry's time is monotonic.

use super::Body;
use crate::problem::Problem;
use crate::{AdminOnly, AppState, Authorized};
use axum::Router;
use axum::extract::State;
use axum::response::Json;
use axum::routing::post;
use commands::Clock as _;
use event_store::RegistryTime;
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new().route("/test/clock", post(move_clock))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Move {
    /// `49h`, `30m`, `15s`, `2d` or `500ms`.
    advance: Option<String>,
    /// An RFC 3339 time not before the clock's.
    set: Option<String>,
}

fn millis(s: &str) -> Option<i64> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().ok()?;
    let unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit)
}

async fn move_clock(
    State(state): State<AppState>,
    _admin: Authorized<AdminOnly>,
    Body(m): Body<Move>,
) -> Result<Json<Value>, Problem> {
    let clock = state.test_clock.as_ref().ok_or_else(|| Problem::not_found("no test clock"))?;
    match (m.advance, m.set) {
        (Some(d), None) => {
            let ms = millis(&d)
                .ok_or_else(|| Problem::invalid("advance", format!("{d:?} is not like 49h, 30m, 15s, 2d or 500ms")))?;
            clock.advance_ms(ms);
        }
        (None, Some(t)) => {
            let t = chrono::DateTime::parse_from_rfc3339(&t).map_err(|e| Problem::invalid("set", e))?;
            let t = RegistryTime(t.timestamp_millis());
            if t < clock.now() {
                return Err(Problem::invalid(
                    "set",
                    format!("the clock never goes back (it is {})", clock.now().rfc3339()),
                ));
            }
            clock.set(t);
        }
        _ => return Err(Problem::invalid("advance", "send exactly one of `advance` and `set`")),
    }
    Ok(Json(json!({ "now": clock.now().rfc3339() })))
}
