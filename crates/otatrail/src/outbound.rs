//! Requests the server makes to others' HTTP/S endpoints: SNS deliveries, with the headers SNS
//! sends (`x-amz-sns-message-type`, `x-amz-sns-message-id`, `x-amz-sns-topic-arn`,
//! `x-amz-sns-subscription-arn` on notifications, `Content-Type: text/plain; charset=UTF-8`).
//! The application layer sees this only through [`crate::app::sns::SnsTransport`].

use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;

use crate::app::sns::{Outbound, SnsTransport};

/// How long one delivery may take before it counts as failed (SNS waits 15 s too).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// POSTs with reqwest (the HTTP client object_store already builds on). A user name and
/// password in an endpoint URL become HTTP basic authentication, as with SNS.
#[derive(Default)]
pub struct HttpTransport {
    client: OnceLock<Result<reqwest::Client, String>>,
}

impl HttpTransport {
    pub fn new() -> Self {
        Self::default()
    }

    fn client(&self) -> Result<&reqwest::Client, String> {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .timeout(DELIVERY_TIMEOUT)
                    .connect_timeout(Duration::from_secs(5))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| format!("HTTP client: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

#[async_trait]
impl SnsTransport for HttpTransport {
    async fn post(&self, m: &Outbound<'_>) -> Result<u16, String> {
        let client = self.client()?;
        let mut req = client
            .post(m.endpoint)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=UTF-8")
            .header(http::header::USER_AGENT, "Amazon Simple Notification Service Agent")
            .header("x-amz-sns-message-type", m.message_type)
            .header("x-amz-sns-message-id", m.message_id)
            .header("x-amz-sns-topic-arn", m.topic_arn);
        if m.message_type == "Notification" {
            req = req.header("x-amz-sns-subscription-arn", m.subscription_arn);
        }
        match req.body(m.body.to_vec()).send().await {
            Ok(r) => Ok(r.status().as_u16()),
            // Without the URL: it may carry a password.
            Err(e) => {
                let e = e.without_url();
                let mut why = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    why.push_str(": ");
                    why.push_str(&s.to_string());
                    source = s.source();
                }
                Err(why)
            }
        }
    }
}
