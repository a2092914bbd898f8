//! Where a project's alerts go: e-mail addresses and webhook URLs, checked when the
//! project is read so that bad input is refused then, not when a mail fails at 3 a.m.

use std::str::FromStr;

/// Parses a comma-separated list of e-mail addresses (`a@x.org, b@y.com`), as a project
/// gives them, so that bad input is refused when the project is applied rather than when a
/// mail fails at 3 a.m. Blank text is an empty list; an empty item (`a@x.org,,b@y.com`) or
/// a malformed address is an error naming the item and its position (counting from 1).
/// Duplicates are dropped, keeping the first.
pub fn parse_email_list(text: &str) -> Result<Vec<String>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut out: Vec<String> = Vec::new();
    for (index, item) in text.split(',').enumerate() {
        let position = index + 1;
        let item = item.trim();
        if item.is_empty() {
            return Err(format!(
                "e-mail address {position} of the list is empty (two commas in a row, or a comma at an end?)"
            ));
        }
        // RFC 5322 addr-spec, as the mailer (lettre) reads it too; without linking a mailer
        // into the engine.
        match email_address::EmailAddress::from_str(item) {
            Ok(address) => {
                let address = address.to_string();
                if !out.contains(&address) {
                    out.push(address);
                }
            }
            Err(e) => {
                return Err(format!(
                    "e-mail address {position} of the list, {item:?}, is not a valid address ({e})"
                ));
            }
        }
    }
    Ok(out)
}

/// Checks a webhook address: an absolute `http` or `https` URL with a host.
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| format!("webhook address {url:?} is not a URL ({e})"))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "webhook address {url:?} uses {other:?}; only http and https are supported"
            ));
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("webhook address {url:?} has no host"));
    }
    Ok(())
}
