//! The registry as the simulator sees it: JSON over HTTP with a bearer token per role,
//! retrying what the API says to retry (503 with Retry-After, 429).

use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{method} {path}: {source}")]
    Http { method: &'static str, path: String, source: reqwest::Error },
    #[error("{method} {path}: still {status} after {tries} tries")]
    Overloaded { method: &'static str, path: String, status: u16, tries: u32 },
}

/// An answer: the status and the JSON body (`Value::Null` when there is none).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    /// Requests sent, retries included.
    sent: AtomicU64,
}

const TRIES: u32 = 20;

impl Client {
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|source| ClientError::Http { method: "GET", path: base.to_string(), source })?;
        Ok(Self { http, base: base.trim_end_matches('/').to_string(), sent: AtomicU64::new(0) })
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub async fn get(&self, token: Option<&str>, path: &str) -> Result<Answer, ClientError> {
        self.send("GET", token, path, None).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> Result<Answer, ClientError> {
        self.send("POST", Some(token), path, Some(Body::Json(body))).await
    }

    pub async fn post_csv(&self, token: &str, path: &str, csv: String) -> Result<Answer, ClientError> {
        self.send("POST", Some(token), path, Some(Body::Csv(csv))).await
    }

    async fn send(
        &self,
        method: &'static str,
        token: Option<&str>,
        path: &str,
        body: Option<Body>,
    ) -> Result<Answer, ClientError> {
        let url = format!("{}{path}", self.base);
        let http = |source| ClientError::Http { method, path: path.to_string(), source };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = match method {
                "POST" => self.http.post(&url),
                _ => self.http.get(&url),
            };
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req = match &body {
                Some(Body::Json(v)) => req.json(v),
                Some(Body::Csv(s)) => req.header("content-type", "text/csv").body(s.clone()),
                None => req,
            };
            self.sent.fetch_add(1, Ordering::Relaxed);
            let res = req.send().await.map_err(http)?;
            let status = res.status().as_u16();
            if (status == 503 || status == 429) && attempt < TRIES {
                let wait =
                    res.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok()).unwrap_or(1);
                tokio::time::sleep(Duration::from_millis(wait * 1000 / 4 + 50 * u64::from(attempt))).await;
                continue;
            }
            if status == 503 || status == 429 {
                return Err(ClientError::Overloaded { method, path: path.to_string(), status, tries: TRIES });
            }
            let bytes = res.bytes().await.map_err(http)?;
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Ok(Answer { status, body });
        }
    }
}

enum Body {
    Json(Value),
    Csv(String),
}
