//! The verifiable log (public): the registry's key, signed checkpoints, inclusion and
//! consistency proofs, and complete receipts. Nothing here names a citizen: personal events
//! enter the tree only as salted commitments (R9), so these routes need no token.

use super::QueryParams;
use crate::problem::Problem;
use crate::{AppState, Caller, Open};
use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use event_store::receipt::Receipt;
use event_store::{Seq, StoreError};
use serde::{Deserialize, Serialize};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/log/key", get(key))
        .route("/log/checkpoint", get(checkpoint).post(sign_checkpoint))
        .route("/log/proof/inclusion", get(inclusion))
        .route("/log/proof/consistency", get(consistency))
        .route("/log/receipt", get(receipt))
}

/// The signer, or 421 on a read replica: the primary signs and serves checkpoints.
fn notary(open: &Open) -> Result<&std::sync::Arc<crate::notary::Notary>, Problem> {
    open.get().notary().ok_or_else(|| {
        Problem::new(
            axum::http::StatusCode::MISDIRECTED_REQUEST,
            "read-only-replica",
            "this is a read replica: ask the primary for its key and checkpoints",
        )
    })
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// Sizes and seqs beyond the log are the caller's mistake, not the registry's.
fn store_problem(what: &str, e: StoreError) -> Problem {
    match e {
        StoreError::SeqOutOfRange { .. } | StoreError::SizeOutOfRange { .. } => {
            Problem::bad_request("out-of-range", e.to_string())
        }
        e => Problem::internal(what, e),
    }
}

#[utoipa::path(
    get,
    path = "/v1/log/key",
    tag = "public",
    summary = "The registry's public key (C2SP signed-note verifier key)",
    responses((status = 200, content_type = "text/plain", body = String))
)]
/// The verifier key that checks every checkpoint and receipt: `<name>+<key id>+<base64>`.
pub(super) async fn key(open: Open) -> Result<Response, Problem> {
    Ok(text(format!("{}\n", notary(&open)?.verifier())))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckpointQuery {
    /// A stored checkpoint's tree size; the newest if left out.
    size: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/v1/log/checkpoint",
    tag = "public",
    summary = "A signed checkpoint (C2SP tlog-checkpoint)",
    params(CheckpointQuery),
    responses((status = 200, content_type = "text/plain", body = String), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json"))
)]
/// The newest signed checkpoint, or the one stored for `size`.
pub(super) async fn checkpoint(open: Open, QueryParams(q): QueryParams<CheckpointQuery>) -> Result<Response, Problem> {
    let r = open.get();
    let found = match q.size {
        Some(size) => r.store.checkpoint(size).map(|n| n.map(|n| (size, n))),
        None => r.store.latest_checkpoint(),
    }
    .map_err(|e| Problem::internal("reading a checkpoint", e))?;
    match (found, q.size) {
        (Some((_, note)), _) => Ok(text(note)),
        (None, Some(size)) => Err(Problem::not_found(format!(
            "no checkpoint was signed at tree size {size}; GET /v1/log/checkpoint for the newest"
        ))),
        // Nothing signed yet (a new registry): sign the current tree now.
        (None, None) => sign(&open).map(|(_, note)| text(note)),
    }
}

fn sign(open: &Open) -> Result<(u64, String), Problem> {
    notary(open)?.checkpoint_now().map_err(|e| Problem::internal("signing a checkpoint", e))
}

#[utoipa::path(
    post,
    path = "/v1/log/checkpoint",
    tag = "public",
    summary = "Sign a checkpoint of the log as it is now",
    responses((status = 200, content_type = "text/plain", body = String), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
/// Signs (and stores) a checkpoint of the current tree, unless the newest one is current.
/// Any token: this writes, so it is not open to the world.
pub(super) async fn sign_checkpoint(open: Open, _caller: Caller) -> Result<Response, Problem> {
    let notary = std::sync::Arc::clone(notary(&open)?);
    let signed = tokio::task::spawn_blocking(move || notary.checkpoint_now())
        .await
        .map_err(|e| Problem::internal("signing a checkpoint", e))?
        .map_err(|e| Problem::internal("signing a checkpoint", e))?;
    Ok(text(signed.1))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct InclusionQuery {
    seq: u64,
    /// The tree size of the checkpoint to prove against.
    size: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct InclusionProof {
    seq: u64,
    size: u64,
    leaf_hash: String,
    /// RFC 9162 §2.1.3 audit path, hex, leaf to root.
    proof: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/v1/log/proof/inclusion",
    tag = "public",
    summary = "RFC 9162 inclusion proof of a seq in the tree of `size` leaves",
    params(InclusionQuery),
    responses((status = 200, body = InclusionProof), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json"))
)]
pub(super) async fn inclusion(open: Open, QueryParams(q): QueryParams<InclusionQuery>) -> Result<Response, Problem> {
    let (leaf_hash, proof) = leaf_and_proof(&open.get().store, q.seq, q.size)?;
    Ok(Json(InclusionProof { seq: q.seq, size: q.size, leaf_hash, proof }).into_response())
}

/// The leaf of `seq` and its inclusion proof in the tree of `size` leaves, in hex.
fn leaf_and_proof(store: &event_store::EventStore, seq: u64, size: u64) -> Result<(String, Vec<String>), Problem> {
    let proof = store.inclusion_proof(Seq(seq), size).map_err(|e| store_problem("building a proof", e))?;
    let leaf = store.leaf_hash(Seq(seq)).map_err(|e| store_problem("building a proof", e))?;
    Ok((hex::encode(leaf), hexes(&proof)))
}

fn hexes(hashes: &[event_store::merkle::Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ConsistencyQuery {
    from: u64,
    to: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ConsistencyProof {
    from: u64,
    to: u64,
    /// RFC 9162 §2.1.4 consistency proof, hex.
    proof: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/v1/log/proof/consistency",
    tag = "public",
    summary = "RFC 9162 consistency proof between two tree sizes",
    params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyProof), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json"))
)]
pub(super) async fn consistency(
    open: Open,
    QueryParams(q): QueryParams<ConsistencyQuery>,
) -> Result<Response, Problem> {
    let proof = open.get().store.consistency_proof(q.from, q.to).map_err(|e| store_problem("building a proof", e))?;
    Ok(Json(ConsistencyProof { from: q.from, to: q.to, proof: hexes(&proof) }).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ReceiptQuery {
    seq: u64,
}

#[utoipa::path(
    get,
    path = "/v1/log/receipt",
    tag = "public",
    summary = "A complete receipt: leaf, inclusion proof and the signed checkpoint it leads to",
    params(ReceiptQuery),
    responses((status = 200, body = event_store::receipt::Receipt), (status = "default", description = "an RFC 9457 problem", body = crate::problem::ProblemBody, content_type = "application/problem+json"))
)]
/// What a CA keeps: `kyso-replay check-receipt` verifies it with only the registry's key.
/// Proves against the newest checkpoint, signing one first if none covers `seq` yet.
pub(super) async fn receipt(open: Open, QueryParams(q): QueryParams<ReceiptQuery>) -> Result<Response, Problem> {
    let r = open.get();
    if q.seq == 0 || q.seq > r.store.last_seq().0 {
        return Err(Problem::bad_request(
            "out-of-range",
            format!("seq {} is not in the log (seqs run from 1 to {})", q.seq, r.store.last_seq()),
        ));
    }
    let (size, checkpoint) =
        match r.store.latest_checkpoint().map_err(|e| Problem::internal("reading a checkpoint", e))? {
            Some((size, note)) if size >= q.seq => (size, note),
            _ => sign(&open)?,
        };
    let (leaf_hash, proof) = leaf_and_proof(&r.store, q.seq, size)?;
    Ok(Json(Receipt { seq: q.seq, leaf_hash, checkpoint, proof }).into_response())
}
