//! E-mail through lettre's async SMTP transport.

use lettre::message::Mailbox;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::message::Outgoing;
use super::{SendError, SmtpSettings, TlsMode, describe};

/// The transport and sender, built once. lettre's connection pool is not compiled in (the
/// host turns lettre's default features off), so every mail opens its own connection:
/// right for a few messages an hour, and a server that was down is simply tried afresh.
pub(super) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// Errors never contain the password: it only goes into lettre's `Credentials`.
    pub(super) fn new(settings: &SmtpSettings) -> Result<Mailer, String> {
        let from: Mailbox = settings.from.parse().map_err(|e| {
            format!(
                "the SMTP from address {:?} is not valid ({e})",
                settings.from
            )
        })?;
        let host = settings.host.as_str();
        let builder = match settings.tls {
            TlsMode::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            TlsMode::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| format!("STARTTLS setup for {host} failed: {}", describe(&e)))?,
            TlsMode::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| format!("TLS setup for {host} failed: {}", describe(&e)))?,
        };
        let mut builder = builder.port(settings.port).timeout(Some(settings.timeout));
        if let Some(user) = &settings.username {
            let password = settings.password.clone().unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
        })
    }

    /// One mail to all of `to` together.
    pub(super) async fn send(&self, to: &[String], message: &Outgoing) -> Result<(), SendError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(message.subject.as_str())
            .header(ContentType::TEXT_PLAIN)
            .header(AutoSubmitted);
        for address in to {
            // Checked by parse_email_list when the project was applied; a bad one here came
            // from somewhere else and will not get better by retrying.
            let mailbox: Mailbox = address.parse().map_err(|e| {
                SendError::permanent(format!("{address:?} is not a valid e-mail address ({e})"))
            })?;
            builder = builder.to(mailbox);
        }
        let email = builder
            .body(message.text.clone())
            .map_err(|e| SendError::permanent(format!("composing the mail failed: {e}")))?;
        match self.transport.send(email).await {
            Ok(_) => Ok(()),
            // A 5xx reply (unknown recipient, relaying denied, bad credentials) will be the
            // same next time; connection failures, timeouts and 4xx replies may not.
            Err(e) => Err(SendError {
                permanent: e.is_permanent(),
                message: describe(&e),
            }),
        }
    }
}

/// `Auto-Submitted: auto-generated` (RFC 3834): tells mail servers and people's
/// vacation responders that nobody wants a reply to this.
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}
