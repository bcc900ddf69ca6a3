//! Alerts: a JSON message POSTed to configured webhooks when a job finally fails or a source's
//! health gets worse. Delivery is retried a few times; a webhook that stays down is logged and
//! never fails the job. Messages carry names, times and error lines, never credentials, and a
//! webhook's URL (often a secret itself) is never logged; only its host is.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::Request;
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

use crate::health::{Level, SourceHealth};
use crate::jobs::{JobKind, JobRecord, hostname};

/// One `[[webhook]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The URL to POST to ...
    pub url: Option<String>,
    /// ... or the environment variable holding it (keeps a Slack URL's secret out of the file).
    pub url_env: Option<String>,
    #[serde(default)]
    pub format: WebhookFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The full alert as a JSON object.
    #[default]
    Json,
    /// `{"text": "..."}`, which Slack, Mattermost and Rocket.Chat incoming webhooks take.
    Slack,
}

impl WebhookConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        match (&self.url, &self.url_env) {
            (Some(url), None) => check_url(url),
            (None, Some(var)) if !var.is_empty() => Ok(()),
            _ => Err("each [[webhook]] needs exactly one of `url` or `url_env`".into()),
        }
    }

    /// The URL to call, read from the environment if so configured.
    fn resolve(&self) -> Result<String, String> {
        match (&self.url, &self.url_env) {
            (Some(url), _) => Ok(url.clone()),
            (None, Some(var)) => {
                let url =
                    std::env::var(var).map_err(|_| format!("webhook url_env {var} is not set"))?;
                check_url(&url).map(|_| url)
            }
            (None, None) => Err("webhook without a url".into()),
        }
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.parse::<hyper::Uri>().is_ok();
    if ok {
        Ok(())
    } else {
        // The URL itself may hold a secret token: say what is wrong, not what it is.
        Err("a webhook url must be an http:// or https:// URL".into())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    /// A job failed after its last attempt.
    JobFailed,
    /// A source's health went to WARNING or CRITICAL.
    Threshold,
    /// A source that was WARNING or CRITICAL got better (`status` is its new level).
    Recovered,
}

impl AlertEvent {
    pub fn label(self) -> &'static str {
        match self {
            AlertEvent::JobFailed => "job_failed",
            AlertEvent::Threshold => "threshold",
            AlertEvent::Recovered => "recovered",
        }
    }
}

/// What an alert says. Built only from names, times, statuses and error lines.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub event: AlertEvent,
    pub source: Option<String>,
    /// The job's id, for `lifeboat jobs`.
    pub job: Option<String>,
    pub kind: Option<JobKind>,
    /// `failed`, `interrupted`, `warning` or `critical`.
    pub status: String,
    /// One line saying why.
    pub error: Option<String>,
    pub attempts: Option<u32>,
    pub host: String,
    pub time: DateTime<Utc>,
}

impl Alert {
    pub fn job_failed(job: &JobRecord, attempts: u32) -> Alert {
        Alert {
            event: AlertEvent::JobFailed,
            source: job.source.clone(),
            job: Some(job.id.clone()),
            kind: Some(job.kind),
            status: job.status.to_string(),
            error: job
                .error
                .as_deref()
                .and_then(|e| e.lines().next())
                .map(str::to_owned),
            attempts: Some(attempts),
            host: job.host.clone(),
            time: job.finished_at.unwrap_or(job.started_at),
        }
    }

    /// A source's level changed: worse is a threshold alert, better a recovery.
    pub fn threshold(health: &SourceHealth, before: Level, now: DateTime<Utc>) -> Alert {
        let reasons: Vec<&str> = health.findings.iter().map(|f| f.message.as_str()).collect();
        Alert {
            event: if health.level > before {
                AlertEvent::Threshold
            } else {
                AlertEvent::Recovered
            },
            source: Some(health.source.clone()),
            job: None,
            kind: None,
            status: match health.level {
                Level::Ok => "ok",
                Level::Warning => "warning",
                Level::Critical => "critical",
            }
            .into(),
            error: (!reasons.is_empty()).then(|| reasons.join("; ")),
            attempts: None,
            host: hostname(),
            time: now,
        }
    }

    /// The alert as one line of text, for chat.
    pub fn text(&self) -> String {
        let source = self.source.as_deref().unwrap_or("(no source)");
        let head = match self.event {
            AlertEvent::JobFailed => format!(
                "lifeboat: {} of {source} {}{}",
                self.kind.map_or("job".into(), |k| k.to_string()),
                self.status,
                self.attempts
                    .filter(|n| *n > 1)
                    .map(|n| format!(" after {n} attempts"))
                    .unwrap_or_default()
            ),
            AlertEvent::Threshold => {
                format!("lifeboat: {source} is {}", self.status.to_uppercase())
            }
            AlertEvent::Recovered => {
                format!(
                    "lifeboat: {source} recovered, now {}",
                    self.status.to_uppercase()
                )
            }
        };
        let why = self
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        let job = self
            .job
            .as_deref()
            .map(|j| format!(" [job {j}]"))
            .unwrap_or_default();
        format!(
            "{head}{why} (host {}, {}){job}",
            self.host,
            self.time.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }

    fn body(&self, format: WebhookFormat) -> Vec<u8> {
        let value = match format {
            WebhookFormat::Json => serde_json::to_value(self).unwrap_or_default(),
            WebhookFormat::Slack => serde_json::json!({ "text": self.text() }),
        };
        value.to_string().into_bytes()
    }
}

/// How often and how patiently a webhook is tried.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub attempts: u32,
    pub first_delay: Duration,
    pub timeout: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            attempts: 4,
            first_delay: Duration::from_millis(500),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Sends `alert` to every webhook; returns how many took it. Failures are logged (by host).
pub async fn notify(
    hooks: &[crate::alert::WebhookConfig],
    alert: &Alert,
    delivery: Delivery,
) -> usize {
    let mut delivered = 0;
    for hook in hooks {
        let url = match hook.resolve() {
            Ok(url) => url,
            Err(e) => {
                tracing::warn!("alert not sent: {e}");
                continue;
            }
        };
        let host = url
            .parse::<hyper::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_owned))
            .unwrap_or_else(|| "?".into());
        match post(&url, alert.body(hook.format), delivery).await {
            Ok(()) => {
                tracing::info!("alert sent to webhook at {host}");
                delivered += 1;
            }
            Err(e) => tracing::warn!("alert to webhook at {host} not delivered: {e}"),
        }
    }
    delivered
}

async fn post(url: &str, body: Vec<u8>, delivery: Delivery) -> Result<(), String> {
    if url.starts_with("https://") {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("no TLS root certificates: {e}"))?
            .https_only()
            .enable_http1()
            .build();
        post_with(
            Client::builder(TokioExecutor::new()).build(https),
            url,
            body,
            delivery,
        )
        .await
    } else {
        let http = HttpConnector::new();
        post_with(
            Client::builder(TokioExecutor::new()).build(http),
            url,
            body,
            delivery,
        )
        .await
    }
}

async fn post_with<C>(
    client: Client<C, Full<Bytes>>,
    url: &str,
    body: Vec<u8>,
    delivery: Delivery,
) -> Result<(), String>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let body = Bytes::from(body);
    let mut last = String::new();
    for attempt in 0..delivery.attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(delivery.first_delay * 2u32.pow(attempt - 1)).await;
        }
        let request = Request::post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("lifeboat/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body.clone()))
            .map_err(|e| format!("bad request: {e}"))?;
        match tokio::time::timeout(delivery.timeout, client.request(request)).await {
            Ok(Ok(resp)) if resp.status().is_success() => return Ok(()),
            Ok(Ok(resp)) => last = format!("HTTP {}", resp.status()),
            // hyper's errors name no URL; the cause chain says refused, reset, TLS, ...
            Ok(Err(e)) => {
                last = std::error::Error::source(&e)
                    .map_or_else(|| e.to_string(), |c| format!("{e}: {c}"));
            }
            Err(_) => last = format!("no answer in {:?}", delivery.timeout),
        }
    }
    Err(format!(
        "{last} (after {} attempts)",
        delivery.attempts.max(1)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_text_is_one_line_with_the_reason() {
        let alert = Alert {
            event: AlertEvent::JobFailed,
            source: Some("shop".into()),
            job: Some("20261124T020000Z-backup-1a2b".into()),
            kind: Some(JobKind::Backup),
            status: "failed".into(),
            error: Some("disk full".into()),
            attempts: Some(3),
            host: "db1".into(),
            time: chrono::DateTime::from_timestamp(0, 0).unwrap(),
        };
        let body: serde_json::Value =
            serde_json::from_slice(&alert.body(WebhookFormat::Slack)).unwrap();
        assert_eq!(
            body["text"],
            "lifeboat: backup of shop failed after 3 attempts: disk full (host db1, 1970-01-01 00:00:00 UTC) [job 20261124T020000Z-backup-1a2b]"
        );
        let body: serde_json::Value =
            serde_json::from_slice(&alert.body(WebhookFormat::Json)).unwrap();
        assert_eq!(body["event"], "job_failed");
        assert_eq!(body["kind"], "backup");
    }

    #[test]
    fn webhook_config_needs_one_url() {
        let hook = |url: Option<&str>, env: Option<&str>| WebhookConfig {
            url: url.map(Into::into),
            url_env: env.map(Into::into),
            format: WebhookFormat::Json,
        };
        assert!(
            hook(Some("https://hooks.example.com/T/B/x"), None)
                .validate()
                .is_ok()
        );
        assert!(hook(None, Some("SLACK_URL")).validate().is_ok());
        assert!(hook(None, None).validate().is_err());
        assert!(hook(Some("ftp://x"), None).validate().is_err());
        assert!(hook(Some("https://a"), Some("B")).validate().is_err());
    }
}
