//! Webhooks: the message's JSON, `POST`ed with reqwest.

use std::time::Duration;

use reqwest::redirect::Policy;

use super::message::Outgoing;
use super::{SendError, describe};

/// Per request, connecting included.
pub(super) const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of a refusing server's answer goes into the error.
const BODY_CHARS: usize = 200;

#[derive(Clone)]
pub(super) struct WebhookClient {
    client: reqwest::Client,
    /// Internal addresses allowed (the administrator's `allow_internal_webhooks`).
    internal: bool,
}

impl WebhookClient {
    pub(super) fn new(internal: bool) -> Result<WebhookClient, String> {
        let mut builder = reqwest::Client::builder();
        if !internal {
            // Names are checked on the addresses the connection then uses, as for
            // plugin HTTP, so a name answering differently later cannot slip by.
            builder = builder.dns_resolver(crate::runtime::webhook_resolver());
        }
        let client = builder
            .timeout(WEBHOOK_TIMEOUT)
            // A receiver that redirects is misconfigured; following would re-send the
            // payload to wherever it points (and a 303 would turn the POST into a GET).
            .redirect(Policy::none())
            .user_agent("weir-notify")
            .build()
            .map_err(|e| format!("building the HTTP client failed: {}", describe(&e)))?;
        Ok(WebhookClient { client, internal })
    }

    /// Delivered means a 2xx answer.
    pub(super) async fn post(&self, url: &str, message: &Outgoing) -> Result<(), SendError> {
        if !self.internal {
            // An IP literal is not resolved, so the resolver never sees it.
            crate::runtime::check_webhook_literal(url).map_err(|message| SendError {
                permanent: true,
                message,
            })?;
        }
        let response = self
            .client
            .post(url)
            .json(&message.json)
            .send()
            .await
            // The URL is left out: it is logged as the (redacted) recipient already.
            .map_err(|e| match crate::runtime::internal_address_refusal(&e) {
                // Refused by the resolver: asking again gets the same answer.
                Some(message) => SendError {
                    permanent: true,
                    message,
                },
                None => SendError {
                    permanent: false,
                    message: describe(&e.without_url()),
                },
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        let body: String = body
            .chars()
            .take(BODY_CHARS)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut error = format!("HTTP {status}");
        if !body.trim().is_empty() {
            error.push_str(": ");
            error.push_str(body.trim());
        }
        // 4xx (bad address, refused payload) repeats itself, except "timeout" and "too many".
        let permanent = status.is_redirection()
            || (status.is_client_error() && !matches!(status.as_u16(), 408 | 429));
        Err(SendError {
            permanent,
            message: error,
        })
    }
}

/// The address as shown in logs and deliveries: a password in it is masked.
pub(super) fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            super::redact("https://u:secret@h.org/x"),
            "https://u:***@h.org/x"
        );
        assert_eq!(
            super::redact("http://127.0.0.1:9/x"),
            "http://127.0.0.1:9/x"
        );
    }
}
