//! The HTTP floor that issue 6 measures kyso against: what hyper and axum cost on this
//! machine, under the same wrk and the same request bodies, with nothing behind them but
//! a channel to one task and a oneshot back (as kyso's handlers reach its sequencer).

use axum::routing::post;
use axum::{Json, Router};
use std::net::SocketAddr;
use tokio::sync::{mpsc, oneshot};

type Job = (serde_json::Value, oneshot::Sender<u64>);

pub fn serve(listen: SocketAddr) {
    // As `kyso serve`: tokio's default multi-thread runtime, one worker per core.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let (tx, mut rx) = mpsc::channel::<Job>(8192);
        tokio::spawn(async move {
            let mut n = 0u64;
            while let Some((_body, reply)) = rx.recv().await {
                n += 1;
                let _ = reply.send(n);
            }
        });
        let app = Router::new().route(
            "/bare",
            post(move |Json(body): Json<serde_json::Value>| {
                let tx = tx.clone();
                async move {
                    let (reply, answer) = oneshot::channel();
                    tx.send((body, reply)).await.expect("the answering task runs until the process ends");
                    let n = answer.await.expect("the answering task answers every job");
                    Json(serde_json::json!({ "seq": n }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap_or_else(|e| panic!("binding {listen}: {e}"));
        println!("bare axum listening on http://{listen}");
        axum::serve(listener, app).await.expect("serving");
    });
}
