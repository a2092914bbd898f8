//! `weir serve`'s configuration file (TOML) and its validated form. Every table
//! denies unknown keys: a misspelt option is an error with its line, never ignored.
//!
//! ```toml
//! listen = "127.0.0.1:8080"        # loopback by default
//! concurrency = 4                  # executions at once
//! base_url = "https://weir.example.com"   # for links in alerts
//! shutdown_grace_secs = 30
//!
//! [smtp]
//! host = "smtp.example.com"
//! port = 587
//! tls = "starttls"                 # none | starttls | tls
//! username = "weir"
//! password_env = "WEIR_SMTP_PASSWORD"   # the password comes from the environment
//! from = "weir <weir@example.com>"
//!
//! [notify]
//! group_window_secs = 900          # repeated failures within this are one digest
//! attempts = 5
//! backoff_secs = 2
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::DaemonSettings;
use crate::notify::{NotifySettings, SmtpSettings, TlsMode};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    pub listen: Option<String>,
    pub concurrency: Option<usize>,
    pub base_url: Option<String>,
    pub shutdown_grace_secs: Option<f64>,
    pub smtp: Option<SmtpFile>,
    #[serde(default)]
    pub notify: NotifyFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpFile {
    pub host: String,
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: TlsMode,
    pub username: Option<String>,
    /// The environment variable holding the password (never the password itself:
    /// configuration files get copied around).
    pub password_env: Option<String>,
    pub from: String,
    pub timeout_secs: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFile {
    pub group_window_secs: Option<f64>,
    pub attempts: Option<u32>,
    pub backoff_secs: Option<f64>,
}

/// The daemon's validated configuration.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub daemon: DaemonSettings,
    pub notify: NotifySettings,
    pub shutdown_grace: Duration,
}

fn secs(v: Option<f64>, what: &str, default: Duration) -> Result<Duration, String> {
    match v {
        None => Ok(default),
        Some(s) if s.is_finite() && s >= 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(format!("{what}: {s} is out of range (0 to 86400 seconds)")),
    }
}

impl ServeConfig {
    /// Reads `file` (if given) and applies `listen` over it.
    pub fn load(file: Option<&Path>, listen: Option<&str>) -> Result<ServeConfig, String> {
        let parsed: ServeFile = match file {
            None => ServeFile::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
        };
        let place = file.map_or("serve options".to_owned(), |p| p.display().to_string());
        ServeConfig::from_file(parsed, listen).map_err(|e| format!("{place}: {e}"))
    }

    fn from_file(f: ServeFile, listen: Option<&str>) -> Result<ServeConfig, String> {
        let listen_text = listen
            .map(str::to_owned)
            .or(f.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            format!("listen {listen_text:?}: write an address and port, e.g. 127.0.0.1:8080")
        })?;
        let concurrency = f.concurrency.unwrap_or(4);
        if !(1..=256).contains(&concurrency) {
            return Err(format!(
                "concurrency: {concurrency} is out of range (1 to 256)"
            ));
        }
        let base_url = f
            .base_url
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_owned();
        crate::notify::check_webhook_url(&base_url).map_err(|e| format!("base_url: {e}"))?;
        let smtp = match f.smtp {
            None => None,
            Some(s) => {
                let password = match &s.password_env {
                    None => None,
                    Some(var) => Some(std::env::var(var).map_err(|_| {
                        format!("smtp.password_env: the environment variable {var} is not set")
                    })?),
                };
                crate::notify::parse_email_list(&s.from)
                    .or_else(|_| {
                        // "Name <address>" is allowed too.
                        s.from
                            .parse::<lettre::message::Mailbox>()
                            .map(|m| vec![m.email.to_string()])
                            .map_err(|e| e.to_string())
                    })
                    .map_err(|e| format!("smtp.from {:?}: {e}", s.from))?;
                let port = s.port.unwrap_or(match s.tls {
                    TlsMode::None => 25,
                    TlsMode::StartTls => 587,
                    TlsMode::Tls => 465,
                });
                Some(SmtpSettings {
                    host: s.host,
                    port,
                    tls: s.tls,
                    username: s.username,
                    password,
                    from: s.from,
                    timeout: secs(s.timeout_secs, "smtp.timeout_secs", Duration::from_secs(30))?,
                })
            }
        };
        let defaults = NotifySettings::default();
        let notify = NotifySettings {
            smtp,
            base_url,
            group_window: secs(
                f.notify.group_window_secs,
                "notify.group_window_secs",
                defaults.group_window,
            )?,
            attempts: f.notify.attempts.unwrap_or(defaults.attempts).clamp(1, 50),
            backoff: secs(
                f.notify.backoff_secs,
                "notify.backoff_secs",
                defaults.backoff,
            )?,
        };
        Ok(ServeConfig {
            listen,
            daemon: DaemonSettings {
                concurrency,
                ..DaemonSettings::default()
            },
            notify,
            shutdown_grace: secs(
                f.shutdown_grace_secs,
                "shutdown_grace_secs",
                Duration::from_secs(30),
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_bind_loopback() {
        let c = ServeConfig::from_file(ServeFile::default(), None).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.notify.base_url, "http://127.0.0.1:8080");
        assert!(c.notify.smtp.is_none());
    }

    #[test]
    fn bad_options_are_named() {
        let f: ServeFile = toml::from_str("concurrency = 0").unwrap();
        assert!(
            ServeConfig::from_file(f, None)
                .unwrap_err()
                .contains("concurrency")
        );
        let e = toml::from_str::<ServeFile>("conccurency = 2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("conccurency"), "{e}");
        let f: ServeFile = toml::from_str(
            "[smtp]\nhost = \"h\"\nfrom = \"x\"\npassword_env = \"WEIR_NO_SUCH_VAR_X\"",
        )
        .unwrap();
        assert!(
            ServeConfig::from_file(f, None)
                .unwrap_err()
                .contains("WEIR_NO_SUCH_VAR_X")
        );
    }
}
