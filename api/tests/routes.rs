//! Every route with every role it serves, and the 401/403/4xx it answers otherwise, driven
//! in-process against a real store, sequencer and projections.

use api::auth::{Role, Tokens};
use api::{AppState, Limits, Registry, Writer, app};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use commands::domain::Campaign;
use commands::registrar::{InlineProjection, Registrar};
use commands::{Clock, ManualClock, Sequencer, SequencerConfig};
use event_store::{EventStore, RegistryTime};
use projections::{Follower, Projections};
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

const HUE: &str = include_str!("../../campaigns/thua-thien-hue.toml");
const TOKENS: [(&str, &str); 6] = [
    ("t-admin", "admin"),
    ("t-auditor", "auditor"),
    ("t-portal", "portal"),
    ("t-reporter", "reporter"),
    ("t-vnpt", "ca:VNPT-CA"),
    ("t-viettel", "ca:VIETTEL-CA"),
];

struct Harness {
    state: AppState,
    clock: Arc<ManualClock>,
    projections: Projections,
    store: Arc<EventStore>,
    /// Joined when the harness drops: a test process that exits while a writer is still
    /// stopping (its last registry snapshot, written and flushed) can crash inside RocksDB
    /// (seen once in CI: "corrupted size vs. prev_size" after every test had passed).
    writer: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        // The writer stops when the last sequencer handle goes, and `state` holds it. A test
        // that failed may have left another handle alive; it is not waited for then.
        self.state = AppState::new(Tokens::fixed(&[]), Limits::default());
        if let Some(writer) = self.writer.take()
            && !std::thread::panicking()
        {
            let _ = writer.join();
        }
    }
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer) = EventStore::open(dir.path(), true).unwrap();
        let campaign = Campaign::from_toml(HUE).unwrap();
        let inline: Vec<Box<dyn InlineProjection>> = vec![Box::new(projections::directory::Directory)];
        let registrar = Registrar::with_inline(Arc::clone(&store), campaign.clone(), inline)
            .unwrap()
            .answering(projections::citizen::answer);
        // 2023-09-01 08:00 UTC: phase 1 of the Huế campaign.
        let clock = Arc::new(ManualClock::new(RegistryTime(1_693_555_200_000)));
        let (sequencer, writer) = Sequencer::start(writer, registrar, clock.clone(), SequencerConfig::default());
        let projections = Projections::open(&store).unwrap();
        let tokens: Vec<(&str, Role)> = TOKENS.iter().map(|(t, r)| (*t, r.parse().unwrap())).collect();
        let state = AppState::new(Tokens::fixed(&tokens), Limits::default());
        let as_clock: Arc<dyn Clock> = clock.clone();
        state.set_registry(Registry {
            store: Arc::clone(&store),
            writer: Writer::Primary {
                sequencer,
                notary: Arc::new(api::notary::Notary::new(
                    Arc::clone(&store),
                    event_store::checkpoint::RegistryKey::from_seed("kyso.example/test", [3; 32]).unwrap(),
                )),
                publisher: None,
            },
            projections: projections.clone(),
            campaign,
            clock: as_clock,
        });
        Self { state, clock, projections, store, writer: Some(writer), _dir: dir }
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())).unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        self.raw(req).await
    }

    async fn raw(&self, req: Request<Body>) -> (StatusCode, Value) {
        let res = app(self.state.clone()).oneshot(req).await.unwrap();
        let status = res.status();
        let problem = res.headers().get("content-type").is_some_and(|v| v == "application/problem+json");
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 24).await.unwrap();
        let v: Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        if status.is_client_error() || status.is_server_error() {
            assert!(problem, "{status} must be problem+json: {v}");
        }
        (status, v)
    }

    /// Folds the asynchronous projections up to the log's end.
    fn catch_up(&self) {
        Follower::new(Arc::clone(&self.store), &self.projections).catch_up().unwrap();
    }

    async fn setup_cas(&self) {
        for (id, name, app) in commands::domain::ca::SEED_CAS {
            let (s, v) = self
                .call("POST", "/v1/cas", Some("t-admin"), Some(json!({"ca": id, "name": name, "app_name": app})))
                .await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
        }
    }
}

fn issuance(citizen: &str) -> Value {
    json!({
        "citizen": citizen, "channel": "app", "segment": "adult_citizen", "commune": "19819",
        "activated_at": "2023-09-01T07:30:00Z"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_routes_record_lookup_and_refuse_with_the_holder() {
    let h = Harness::new();
    h.setup_cas().await;
    // R2: the lookup is recorded and says "not issued".
    let (s, v) = h.call("GET", "/v1/citizens/046196000123", Some("t-vnpt"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["issued"].is_null() && v["lookup_seq"].as_u64().is_some());

    let (s, v) = h.call("POST", "/v1/issuances", Some("t-vnpt"), Some(issuance("046196000123"))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["receipt"]["leaf_hash"].as_str().unwrap().len(), 64);
    assert_eq!(v["free_until"], "2024-09-01T07:30:00.000Z");
    // The lookup right after the acknowledged write sees it.
    let (_, v) = h.call("GET", "/v1/citizens/046196000123", Some("t-viettel"), None).await;
    assert_eq!(v["issued"]["ca"], "VNPT-CA");
    // R1/R3: another CA is refused with the holder, and the refusal is logged.
    let (s, v) = h.call("POST", "/v1/issuances", Some("t-viettel"), Some(issuance("046196000123"))).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["type"], "https://kyso.example/problems/already-issued");
    assert_eq!(v["holder"]["ca"], "VNPT-CA");
    assert!(v["refusal_logged_at_seq"].as_u64().is_some());
    // R7: the citizen switches; the free year stays the first CA's.
    let (s, v) = h.call("POST", "/v1/issuances/switch", Some("t-viettel"), Some(issuance("046196000123"))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["free_until"], "2024-09-01T07:30:00.000Z");
    // Only CAs record issuances; the Sở and others get 403, strangers 401.
    for t in ["t-admin", "t-portal", "t-reporter", "t-auditor"] {
        let (s, _) = h.call("POST", "/v1/issuances", Some(t), Some(issuance("046196000124"))).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{t}");
    }
    assert_eq!(h.call("POST", "/v1/issuances", None, Some(issuance("046196000124"))).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.call("POST", "/v1/issuances", Some("nope"), Some(issuance("046196000124"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.call("GET", "/v1/citizens/046196000123", Some("t-portal"), None).await.0, StatusCode::FORBIDDEN);
    // The role is checked before the path and the body: a wrong role learns nothing about
    // what the route would accept.
    assert_eq!(h.call("POST", "/v1/issuances", Some("t-portal"), Some(json!({}))).await.0, StatusCode::FORBIDDEN);
    assert_eq!(h.call("POST", "/v1/cas", Some("t-vnpt"), Some(json!({"x": 1}))).await.0, StatusCode::FORBIDDEN);
    assert_eq!(h.call("GET", "/v1/citizens/not-a-cccd", Some("t-portal"), None).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_problem_never_a_500() {
    let h = Harness::new();
    h.setup_cas().await;
    let cases: Vec<(&str, &str, Option<Value>, StatusCode)> = vec![
        ("GET", "/v1/citizens/12345", None, StatusCode::UNPROCESSABLE_ENTITY),
        ("GET", "/v1/citizens/999196000123", None, StatusCode::UNPROCESSABLE_ENTITY),
        ("POST", "/v1/issuances", Some(json!({"citizen": "046196000123"})), StatusCode::UNPROCESSABLE_ENTITY),
        ("POST", "/v1/issuances", Some(json!({"citizen": 5, "channel": "fax"})), StatusCode::UNPROCESSABLE_ENTITY),
        (
            "POST",
            "/v1/issuances",
            Some(
                json!({"activated_at": "2030-01-01T00:00:00Z", "citizen": "046196000123", "channel": "app", "segment": "student", "commune": "19819"}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/v1/issuances",
            Some(
                json!({"activated_at": "2023-09-01T00:00:00Z", "citizen": "046196000123", "channel": "app", "segment": "student", "commune": "00000"}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("POST", "/v1/demands/abc/ack", None, StatusCode::BAD_REQUEST),
        ("POST", "/v1/demands/77/ack", None, StatusCode::NOT_FOUND),
        ("GET", "/v1/nothing-here", None, StatusCode::NOT_FOUND),
    ];
    for (m, p, b, want) in cases {
        let (s, v) = h.call(m, p, Some("t-vnpt"), b).await;
        assert_eq!(s, want, "{m} {p}: {v}");
    }
    // Broken JSON, a missing content type, an oversized body.
    let req = |body: &str, ct: Option<&str>| {
        let mut r = Request::post("/v1/issuances").header("authorization", "Bearer t-vnpt");
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r.body(Body::from(body.to_string())).unwrap()
    };
    assert_eq!(h.raw(req("{not json", Some("application/json"))).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(h.raw(req("{}", None)).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = format!("{{\"citizen\": \"{}\"}}", "9".repeat(200_000));
    assert_eq!(h.raw(req(&big, Some("application/json"))).await.0, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replays_the_first_answer_and_refuses_a_different_body() {
    let h = Harness::new();
    h.setup_cas().await;
    let post = |body: Value, key: &str| {
        Request::post("/v1/issuances")
            .header("authorization", "Bearer t-vnpt")
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let (s1, v1) = h.raw(post(issuance("046196000200"), "k-1")).await;
    assert_eq!(s1, StatusCode::CREATED, "{v1}");
    let last = h.store.last_seq();
    let (s2, v2) = h.raw(post(issuance("046196000200"), "k-1")).await;
    assert_eq!(s2, StatusCode::OK);
    assert_eq!((v2["seq"].clone(), v2["replayed"].clone()), (v1["seq"].clone(), json!(true)));
    // The first answer's receipt came with the batch, the replayed one is read back: the same.
    assert!(v1["receipt"]["leaf_hash"].is_string(), "{v1}");
    assert_eq!(v2["receipt"], v1["receipt"]);
    assert_eq!(h.store.last_seq(), last, "a replay records nothing");
    let (s3, v3) = h.raw(post(issuance("046196000201"), "k-1")).await;
    assert_eq!(s3, StatusCode::UNPROCESSABLE_ENTITY, "{v3}");
    assert_eq!(v3["type"], "https://kyso.example/problems/idempotency-key-reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demands_staff_and_referee_routes_respect_roles() {
    let h = Harness::new();
    h.setup_cas().await;
    // R12: the portal registers; the chosen CA sees it, another CA does not.
    let demand = json!({"citizen": "046196000300", "mode": "home", "phone": "0905123456", "commune": "19819", "chosen_ca": "VNPT-CA"});
    let (s, v) = h.call("POST", "/v1/demands", Some("t-portal"), Some(demand.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["ca"], "VNPT-CA");
    let id = v["demand"].as_u64().unwrap();
    assert_eq!(h.call("POST", "/v1/demands", Some("t-vnpt"), Some(demand)).await.0, StatusCode::FORBIDDEN);
    h.catch_up();
    let (_, mine) = h.call("GET", "/v1/demands", Some("t-vnpt"), None).await;
    let (_, theirs) = h.call("GET", "/v1/demands", Some("t-viettel"), None).await;
    assert_eq!((mine.as_array().unwrap().len(), theirs.as_array().unwrap().len()), (1, 0));
    assert!(mine[0]["time_left_ms"].as_i64().unwrap() > 0);
    assert_eq!(
        h.call("POST", &format!("/v1/demands/{id}/ack"), Some("t-viettel"), None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(h.call("POST", &format!("/v1/demands/{id}/ack"), Some("t-vnpt"), None).await.0, StatusCode::OK);

    // R11: staff with a QR token; anyone can verify it; a revoked badge fails at once.
    let staff =
        json!({"full_name": "Nguyễn Văn A", "birth_year": 1990, "position": "field agent", "photo_ref": "p/1.jpg"});
    let (s, v) = h.call("POST", "/v1/staff", Some("t-vnpt"), Some(staff)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (staff_id, token) = (v["staff"].as_u64().unwrap(), v["qr_token"].as_str().unwrap().to_string());
    let (_, ok) = h.call("GET", &format!("/v1/staff/verify/{token}"), None, None).await;
    assert_eq!((ok["authorized"].clone(), ok["ca"]["ca"].clone()), (json!(true), json!("VNPT-CA")));
    assert_eq!(h.call("GET", "/v1/staff/verify/forged", None, None).await.1["authorized"], json!(false));
    let (_, list) = h.call("GET", "/v1/staff", Some("t-viettel"), None).await;
    assert_eq!(list.as_array().unwrap().len(), 0, "a CA sees only its own staff");
    assert_eq!(
        h.call("DELETE", &format!("/v1/staff/{staff_id}"), Some("t-viettel"), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.call("DELETE", &format!("/v1/staff/{staff_id}"), Some("t-vnpt"), None).await.0, StatusCode::OK);
    assert_eq!(h.call("GET", &format!("/v1/staff/verify/{token}"), None, None).await.1["authorized"], json!(false));

    // R13: complaint → upheld → published violation → expulsion; referee routes are the Sở's.
    let complaint = json!({"against": "VIETTEL-CA", "kind": "issued_without_consent", "citizen": "046196000300", "text": "signed without asking"});
    let (s, v) = h.call("POST", "/v1/complaints", Some("t-portal"), Some(complaint)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let cid = v["id"].as_u64().unwrap();
    let resolution = json!({"upheld": true, "note": "confirmed by the trail"});
    assert_eq!(
        h.call("POST", &format!("/v1/complaints/{cid}/resolve"), Some("t-portal"), Some(resolution.clone())).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.call("POST", &format!("/v1/complaints/{cid}/resolve"), Some("t-admin"), Some(resolution)).await.0,
        StatusCode::CREATED
    );
    for t in ["t-vnpt", "t-reporter", "t-portal", "t-auditor"] {
        assert_eq!(
            h.call("POST", "/v1/cas/VIETTEL-CA/expel", Some(t), Some(json!({"reason": "x"}))).await.0,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(
        h.call("POST", "/v1/cas/VIETTEL-CA/expel", Some("t-admin"), Some(json!({"reason": "R13"}))).await.0,
        StatusCode::CREATED
    );
    let (s, v) = h.call("POST", "/v1/issuances", Some("t-viettel"), Some(issuance("046196000301"))).await;
    assert_eq!((s, v["type"].clone()), (StatusCode::FORBIDDEN, json!("https://kyso.example/problems/ca-not-active")));
    h.catch_up();
    let (_, published) = h.call("GET", "/v1/violations", None, None).await;
    assert_eq!(published[0]["ca"], "VIETTEL-CA");
    for (path, body) in [
        ("/v1/zones", json!({"ca": "MISA-CA", "commune": "19774"})),
        ("/v1/counters", json!({"counter": "PD-1", "commune": "19819"})),
        ("/v1/booths", json!({"booth": "B-1", "commune": "19819", "ca": "MISA-CA", "week_start": "2023-08-28"})),
        ("/v1/violations", json!({"ca": "MISA-CA", "kind": "other", "description": "late reports"})),
    ] {
        assert_eq!(h.call("POST", path, Some("t-vnpt"), Some(body.clone())).await.0, StatusCode::FORBIDDEN, "{path}");
        let (s, v) = h.call("POST", path, Some("t-admin"), Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{path}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_audit_and_events_are_for_their_roles_and_explain_themselves() {
    let h = Harness::new();
    h.setup_cas().await;
    for i in 0..5 {
        let (s, v) = h.call("POST", "/v1/issuances", Some("t-vnpt"), Some(issuance(&format!("04619600040{i}")))).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (s, _) = h.call("POST", "/v1/issuances", Some("t-viettel"), Some(issuance("046196000400"))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    h.clock.advance_ms(60_000);
    h.catch_up();

    let (s, v) = h.call("GET", "/v1/reports/counts?group_by=ca,channel", Some("t-reporter"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v[0]["group"], json!(["VNPT-CA", "app"]));
    assert_eq!(v[0]["issued"], 5);
    let req = Request::get("/v1/reports/counts?group_by=district&format=csv")
        .header("authorization", "Bearer t-admin")
        .body(Body::empty())
        .unwrap();
    let (s, csv) = h.raw(req).await;
    assert_eq!(s, StatusCode::OK);
    assert!(csv.as_str().unwrap().starts_with("district,issued,technical_error,late,switched_in\n"), "{csv}");
    assert_eq!(
        h.call("GET", "/v1/reports/counts?group_by=planet", Some("t-reporter"), None).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (_, t) = h.call("GET", "/v1/reports/targets", Some("t-reporter"), None).await;
    assert!(t["campaign"].as_str().unwrap().contains("Huế"), "{t}");
    let (_, r) = h.call("GET", "/v1/reports/rollup", Some("t-reporter"), None).await;
    assert_eq!(r["tally"]["issued"], 5);
    let (_, c) = h.call("GET", "/v1/reports/compliance", Some("t-reporter"), None).await;
    let viettel = c.as_array().unwrap().iter().find(|l| l["ca"] == "VIETTEL-CA").unwrap();
    assert_eq!(viettel["refused_duplicates"], 1);
    for path in ["/v1/reports/demands", "/v1/reports/booths"] {
        assert_eq!(h.call("GET", path, Some("t-reporter"), None).await.0, StatusCode::OK, "{path}");
    }
    for t in ["t-vnpt", "t-portal"] {
        assert_eq!(h.call("GET", "/v1/reports/counts", Some(t), None).await.0, StatusCode::FORBIDDEN);
        assert_eq!(h.call("GET", "/v1/audit/citizens/046196000400", Some(t), None).await.0, StatusCode::FORBIDDEN);
        assert_eq!(h.call("GET", "/v1/events", Some(t), None).await.0, StatusCode::FORBIDDEN);
    }
    // The count explains itself with the events behind it.
    let (_, e) = h.call("GET", "/v1/reports/explain?ca=VNPT-CA&day=2023-09-01", Some("t-auditor"), None).await;
    assert_eq!(e["count"], 5);
    // R13: the citizen's trail holds the issuance and the refused attempt, in order.
    let (_, trail) = h.call("GET", "/v1/audit/citizens/046196000400", Some("t-auditor"), None).await;
    let types: Vec<&str> =
        trail["events"].as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["IssuanceRecorded", "AttemptRefused"]);
    // Auditors read the CCCD as the number people write, not as the stored bytes.
    assert_eq!(trail["events"][0]["event"]["IssuanceRecorded"]["citizen"], "046196000400");
    let (_, ca) = h.call("GET", "/v1/audit/cas/VIETTEL-CA", Some("t-admin"), None).await;
    assert_eq!(ca["events"].as_array().unwrap().len(), 2, "registered + refused attempt");
    let (_, log) = h.call("GET", "/v1/events?from_seq=1&limit=3", Some("t-auditor"), None).await;
    assert_eq!(log["events"].as_array().unwrap().len(), 3);
    assert_eq!(log["events"][0]["recorded_at"], "2023-09-01T08:00:00.000Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let h = Harness::new();
    h.setup_cas().await;
    assert_eq!(h.call("GET", "/healthz", None, None).await.0, StatusCode::OK);
    let (s, ready) = h.call("GET", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ready["last_seq"], 6);
    assert_eq!(ready["projection_lag"], 6, "nothing folded yet");
    h.catch_up();
    assert_eq!(h.call("GET", "/readyz", None, None).await.1["projection_lag"], 0);
    // Counted under no path of its own: raw paths would let callers grow the label set.
    assert_eq!(h.call("GET", "/v1/no/such/route/42", None, None).await.0, StatusCode::NOT_FOUND);
    let (s, text) = h.call("GET", "/metrics", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let text = text.as_str().unwrap();
    for needle in [
        r#"kyso_http_requests_total{method="POST",route="/v1/cas",status="201"} 6"#,
        r#"kyso_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        "kyso_sequencer_commands_total 6",
        "kyso_sequencer_queue_depth 0",
        "kyso_projection_counts_lag 0",
        "kyso_http_request_seconds_bucket",
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
    // A server still opening answers 503 with a problem, not a hang or a 500.
    let opening = AppState::new(Tokens::fixed(&[]), Limits::default());
    let res = app(opening).oneshot(Request::get("/v1/cas").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_exists_and_docs_are_served() {
    let h = Harness::new();
    h.setup_cas().await;
    let (s, spec) = h.call("GET", "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let paths = spec["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, methods) in paths {
        let concrete = path.replace("{cccd}", "046196000123").replace("{id}", "1").replace("{token}", "x");
        for method in methods.as_object().unwrap().keys() {
            operations += 1;
            let (s, v) = h.call(&method.to_uppercase(), &concrete, Some("t-admin"), None).await;
            let unrouted = v["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("no such route") || d.contains("does not take that method"));
            assert!(!unrouted, "{method} {path} is documented but not routed: {s} {v}");
        }
    }
    assert_eq!(operations, 40);
    // Every answer has a typed schema, so the fuzz run checks the fields of every body: an
    // untyped `{"type": "object"}` anywhere would let any JSON object pass.
    fn untyped(v: &Value, at: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) if m.len() == 1 && m.get("type") == Some(&json!("object")) => out.push(at.to_string()),
            Value::Object(m) => m.iter().for_each(|(k, v)| untyped(v, &format!("{at}/{k}"), out)),
            Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| untyped(v, &format!("{at}/{i}"), out)),
            _ => {}
        }
    }
    let mut loose = Vec::new();
    untyped(&spec, "", &mut loose);
    assert!(loose.is_empty(), "untyped schemas at {loose:?}");
    let res = app(h.state.clone()).oneshot(Request::get("/docs/").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(h.call("PUT", "/v1/issuances", Some("t-vnpt"), None).await.0, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r6_imports_report_per_row_and_refuse_non_utf8() {
    let h = Harness::new();
    h.setup_cas().await;
    let csv = "cccd,issued_at,serial\n046196000500,2023-05-01T00:00:00Z,S1\nnot-a-cccd,2023-05-01T00:00:00Z,S2\n";
    let post = |body: Vec<u8>, token: &str| {
        Request::post("/v1/imports")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "text/csv")
            .body(Body::from(body))
            .unwrap()
    };
    let (s, report) = h.raw(post(csv.as_bytes().to_vec(), "t-vnpt")).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(report["imported"], 1);
    assert_eq!(report["failed"][0]["line"], 3);
    assert_eq!(h.raw(post(vec![0xff, 0xfe], "t-vnpt")).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(h.raw(post(csv.as_bytes().to_vec(), "t-portal")).await.0, StatusCode::FORBIDDEN);

    // Streamed in 7-byte pieces, rows cut across pieces, more rows than one batch, a bad
    // line among them: every row is decided once and the report names the bad line.
    let mut big = String::from("cccd,issued_at,serial\r\n");
    for i in 0..3000 {
        big.push_str(&format!("0461970{i:05},2023-05-01,S{i}\r\n"));
        if i == 1500 {
            big.push_str("0461970\u{1F600},2023-05-01,X\r\n");
        }
    }
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = big.as_bytes().chunks(7).map(|c| Ok(c.to_vec())).collect();
    let streamed = Request::post("/v1/imports")
        .header("authorization", "Bearer t-vnpt")
        .header("content-type", "text/csv")
        .body(Body::from_stream(futures::stream::iter(pieces)))
        .unwrap();
    let (s, report) = h.raw(streamed).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!((report["imported"].as_u64(), report["unchanged"].as_u64()), (Some(3000), Some(0)));
    assert_eq!(report["failed"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["failed"][0]["line"], 1503);
    let (_, again) = h.raw(post(big.into_bytes(), "t-vnpt")).await;
    assert_eq!((again["imported"].as_u64(), again["unchanged"].as_u64()), (Some(0), Some(3000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_routes_give_receipts_that_verify_with_the_public_key_alone() {
    let h = Harness::new();
    h.setup_cas().await;
    let (s, v) = h.call("POST", "/v1/issuances", Some("t-vnpt"), Some(issuance("046196000123"))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let seq = v["receipt"]["seq"].as_u64().unwrap();
    let proof_url = v["receipt"]["proof"].as_str().unwrap().to_string();
    assert_eq!(proof_url, format!("/v1/log/receipt?seq={seq}"));

    // Public routes: no token.
    let (s, key) = h.call("GET", "/v1/log/key", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let key = event_store::checkpoint::VerifierKey::parse(key.as_str().unwrap()).unwrap();
    let (s, receipt) = h.call("GET", &proof_url, None, None).await;
    assert_eq!(s, StatusCode::OK, "{receipt}");
    let receipt: event_store::receipt::Receipt = serde_json::from_value(receipt).unwrap();
    assert_eq!(receipt.leaf_hash, v["receipt"]["leaf_hash"]);
    let signed = receipt.verify(&key).unwrap();
    assert_eq!(signed.size, h.store.last_seq().0);
    // A receipt with another leaf does not verify.
    let forged = event_store::receipt::Receipt { leaf_hash: "00".repeat(32), ..receipt.clone() };
    assert!(forged.verify(&key).is_err());

    // The checkpoint it was proved against stays retrievable after the log grows.
    let (s, _) = h.call("POST", "/v1/issuances", Some("t-vnpt"), Some(issuance("046196000124"))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, note) = h.call("POST", "/v1/log/checkpoint", Some("t-auditor"), None).await;
    assert_eq!(s, StatusCode::OK);
    let newest = key.open(note.as_str().unwrap()).unwrap();
    assert_eq!(newest.size, h.store.last_seq().0);
    let (s, old) = h.call("GET", &format!("/v1/log/checkpoint?size={}", signed.size), None, None).await;
    assert_eq!((s, old.as_str().unwrap()), (StatusCode::OK, receipt.checkpoint.as_str()));

    // Consistency from the receipt's tree to the newest one, checked offline.
    let (s, c) =
        h.call("GET", &format!("/v1/log/proof/consistency?from={}&to={}", signed.size, newest.size), None, None).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let proof: Vec<[u8; 32]> = c["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hex::decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect();
    event_store::verify::verify_consistency(signed.size, newest.size, &signed.root, &newest.root, &proof).unwrap();

    // Out of range is the caller's mistake.
    let (s, p) = h.call("GET", "/v1/log/proof/inclusion?seq=1&size=999999", None, None).await;
    assert_eq!(
        (s, p["type"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "https://kyso.example/problems/out-of-range")
    );
    let (s, _) = h.call("GET", "/v1/log/receipt?seq=0", None, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = h.call("GET", "/v1/log/checkpoint?size=1", None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_verification_is_rate_limited_per_client() {
    let h = Harness::new();
    h.setup_cas().await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(h.call("GET", "/v1/staff/verify/not-a-real-token", None, None).await);
    }
    // The first burst is answered (unknown token: not authorized), then 429 with Retry-After.
    assert!(statuses[..5].iter().all(|(s, _)| *s == StatusCode::OK), "{statuses:?}");
    let (s, v) = statuses.last().unwrap();
    assert_eq!(*s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["type"], "https://kyso.example/problems/rate-limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_clock_route_exists_only_with_a_test_clock_and_never_goes_back() {
    let mut h = Harness::new();
    assert_eq!(
        h.call("POST", "/v1/test/clock", Some("t-admin"), Some(json!({"advance": "49h"}))).await.0,
        StatusCode::NOT_FOUND
    );
    h.state = h.state.clone().with_test_clock(Arc::clone(&h.clock));
    let (s, v) = h.call("POST", "/v1/test/clock", Some("t-admin"), Some(json!({"advance": "49h"}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["now"], "2023-09-03T09:00:00.000Z");
    let (s, _) = h.call("POST", "/v1/test/clock", Some("t-vnpt"), Some(json!({"advance": "1h"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for bad in [json!({"advance": "-1h"}), json!({"set": "2023-09-01T00:00:00Z"}), json!({})] {
        let (s, v) = h.call("POST", "/v1/test/clock", Some("t-admin"), Some(bad)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    }
}

/// `data-k` → (`data-v`, shown text) for every number on a page as Chromium rendered it.
fn numbers_on_page(dom: &str) -> std::collections::BTreeMap<String, (String, String)> {
    let attr = |tag: &str, name: &str| {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        Some(tag[start..start + tag[start..].find('"')?].to_string())
    };
    let mut out = std::collections::BTreeMap::new();
    let mut rest = dom;
    while let Some(at) = rest.find("data-k=\"") {
        let open = rest[..at].rfind('<').expect("inside a tag");
        let close = at + rest[at..].find('>').expect("tag ends");
        let tag = &rest[open..close];
        let text_end = close + rest[close..].find('<').unwrap_or(rest.len() - close);
        let (k, v) = (attr(tag, "data-k").unwrap(), attr(tag, "data-v").unwrap_or_default());
        out.insert(k, (v, rest[close + 1..text_end].to_string()));
        rest = &rest[close..];
    }
    out
}

/// Issue 6: the dashboard at `/`, loaded in headless Chromium against a server with data,
/// shows the numbers the API gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_numbers_the_api_gives() {
    let h = Harness::new();
    h.setup_cas().await;
    // Three days, three CAs, communes in three districts, one late, a demand, a violation.
    let communes = ["19750", "19819", "19867", "19903"];
    let cas = ["t-vnpt", "t-viettel", "t-vnpt", "t-viettel", "t-vnpt"];
    let mut n = 0;
    for day in 0..3 {
        h.clock.set(RegistryTime(1_693_555_200_000 + day * 86_400_000));
        for i in 0..(4 + day as usize * 3) {
            n += 1;
            let activated = chrono::DateTime::from_timestamp_millis(h.clock.now().0 - 60_000).unwrap();
            let body = json!({
                "citizen": format!("0461960{n:05}"), "channel": "app", "segment": "adult_citizen",
                "commune": communes[i % communes.len()], "activated_at": activated.to_rfc3339(),
            });
            let (s, v) = h.call("POST", "/v1/issuances", Some(cas[i % cas.len()]), Some(body)).await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
        }
    }
    let late = json!({"citizen": "046196099999", "channel": "app", "segment": "adult_citizen", "commune": "19750",
        "activated_at": "2023-09-01T08:00:00Z"});
    assert_eq!(h.call("POST", "/v1/issuances", Some("t-vnpt"), Some(late)).await.0, StatusCode::CREATED);
    let demand = json!({"citizen": "046196000900", "mode": "home", "phone": "0905123456", "commune": "19819", "chosen_ca": "VNPT-CA"});
    assert_eq!(h.call("POST", "/v1/demands", Some("t-portal"), Some(demand)).await.0, StatusCode::CREATED);
    let violation = json!({"ca": "VIETTEL-CA", "kind": "other", "description": "late reports"});
    assert_eq!(h.call("POST", "/v1/violations", Some("t-admin"), Some(violation)).await.0, StatusCode::CREATED);
    h.catch_up();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = app(h.state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, service).await });
    let profile = tempfile::tempdir().unwrap();
    // Virtual time runs only while the page has no network work pending, so the budget
    // covers the first refresh (and its fetches) whatever the machine's speed.
    let chromium = tokio::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=4000", "--dump-dom"])
        // The machine's network is closed: Chromium's own background traffic only fails.
        .args(["--disable-quic", "--no-first-run", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://127.0.0.1:{port}/#token=t-reporter"))
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), chromium)
        .await
        .expect("chromium answers within 2 minutes")
        .expect("chromium runs (Debian package `chromium`; scripts/lib.sh installs it)");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("data-loaded=\"1\""), "the page did not finish its first refresh:\n{dom}");
    let page = numbers_on_page(&dom);
    let shown = |k: &str| -> u64 {
        let (v, text) = page.get(k).unwrap_or_else(|| panic!("{k} is not on the page"));
        assert_eq!(text.replace(',', ""), *v, "{k} shows {text} for {v}");
        v.parse().unwrap()
    };

    let (_, total) = h.call("GET", "/v1/reports/counts", Some("t-reporter"), None).await;
    assert_eq!(shown("total:issued"), total[0]["issued"].as_u64().unwrap());
    assert_eq!(shown("total:issued"), n + 1);
    // The Huế campaign sets no targets (the seeds give none): the page says so.
    let (_, targets) = h.call("GET", "/v1/reports/targets", Some("t-reporter"), None).await;
    assert!(targets["total"].is_null(), "{targets}");
    assert_eq!(page["total:target"].0, "");
    assert!(dom.contains("this campaign sets no targets"));
    let by = [
        ("segment", &["issued"][..]),
        ("ca", &["issued", "late"]),
        ("district", &["issued", "late"]),
        ("day", &["issued"]),
    ];
    for (dim, fields) in by {
        let (_, rows) = h.call("GET", &format!("/v1/reports/counts?group_by={dim}"), Some("t-reporter"), None).await;
        let rows = rows.as_array().unwrap();
        assert!(!rows.is_empty(), "{dim}: {rows:?}");
        for r in rows {
            for f in fields {
                let key = format!("{dim}:{}:{f}", r["group"][0].as_str().unwrap());
                assert_eq!(shown(&key), r[f].as_u64().unwrap(), "{key}");
            }
        }
    }
    assert!(shown("ca:VNPT-CA:late") >= 1);
    let (_, demands) = h.call("GET", "/v1/reports/demands", Some("t-reporter"), None).await;
    assert_eq!(shown("demands:open"), demands["open"].as_u64().unwrap());
    assert_eq!(shown("demands:VNPT-CA:open"), 1);
    let due = &demands["due_soon"][0];
    assert_eq!(page[&format!("due:{}:time_left_ms", due["demand"])].0, due["time_left_ms"].to_string());
    let (_, compliance) = h.call("GET", "/v1/reports/compliance", Some("t-reporter"), None).await;
    for line in compliance.as_array().unwrap() {
        let ca = line["ca"].as_str().unwrap();
        assert_eq!(shown(&format!("compliance:{ca}:issuances")), line["issuances"].as_u64().unwrap());
    }
    assert_eq!(shown("violations:count"), 1);
    // The server holds a sequencer handle; the harness waits for the writer to stop.
    server.abort();
    let _ = server.await;
}
