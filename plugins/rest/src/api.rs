//! Requests to the API through the host: URLs from options, and what a status
//! means (success, a rejected record, or a failed call).

use serde_json::Value as Json;
use weir_sdk::http::{self, Request, Response};
use weir_sdk::{Error, Organization, RecordError};

use crate::settings::{Orgs, Settings};
use crate::values::{at_path, key_text, parse_body, records_of};

/// The API as one call sees it: the connection's settings and the organization.
pub struct Api<'a> {
    pub settings: &'a Settings,
    pub organization: Option<&'a str>,
}

/// What a response means for one record.
pub enum Answer {
    Ok(Response),
    /// A 4xx other than 401/403 (and 404 where the caller handles it): the
    /// server refused this record.
    Refused(RecordError),
}

impl Api<'_> {
    /// The absolute URL of `path` (relative to `base_url`, or absolute), with
    /// `{organization}` filled in, plus `params` and the organization parameter.
    pub fn url(&self, path: &str, params: &[(String, String)]) -> Result<String, Error> {
        let mut url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            let sep = if path.starts_with('/') || path.is_empty() {
                ""
            } else {
                "/"
            };
            format!("{}{sep}{path}", self.settings.base_url)
        };
        if url.contains("{organization}") {
            let org = self.organization.ok_or_else(|| {
                Error::config(format!(
                    "`{path}` needs an organization (`{{organization}}`) and the project names none"
                ))
            })?;
            url = url.replace("{organization}", &http::encode(org));
        }
        let mut query: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let (Some(param), Some(org)) = (&self.settings.organization_param, self.organization) {
            query.push((param, org));
        }
        Ok(with_query(url, &query))
    }

    fn request(&self, method: &str, url: &str) -> Request {
        let mut r = Request::new(method, url).header("Accept", "application/json");
        for (k, v) in &self.settings.headers {
            r = r.header(k, v);
        }
        r
    }

    /// Sends; a transport failure, 401/403, 429 or 5xx fails the call.
    pub fn send(&self, request: &Request) -> Result<Response, Error> {
        let response = http::send(request).map_err(http::error)?;
        match response.status {
            401 | 403 | 429 | 500..=599 => {
                http::check_status(&response)?;
                unreachable!("check_status refuses these")
            }
            _ => Ok(response),
        }
    }

    /// A GET that must succeed, as JSON.
    pub fn get_json(&self, url: &str) -> Result<(Response, Json), Error> {
        let response = self.send(&self.request("GET", url))?;
        if !(200..300).contains(&response.status) {
            return Err(Error::connection(format!(
                "GET {} answered HTTP {}: {}",
                without_query(url),
                response.status,
                server_message(&response.body, None)
            )));
        }
        let json = parse_body(&response.body)?;
        Ok((response, json))
    }

    /// A GET whose 4xx (other than 401/403) concerns one record; 404 is `None`.
    pub fn get_record(
        &self,
        url: &str,
        error_field: Option<&[String]>,
    ) -> Result<Option<Answer>, Error> {
        let response = self.send(&self.request("GET", url))?;
        if response.status == 404 {
            return Ok(None);
        }
        Ok(Some(answer(response, error_field)))
    }

    /// Sends a JSON body (POST, PUT, PATCH).
    pub fn send_json(
        &self,
        method: &str,
        url: &str,
        body: &Json,
        error_field: Option<&[String]>,
    ) -> Result<Answer, Error> {
        let request = self
            .request(method, url)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(body).map_err(|e| Error::internal(e.to_string()))?);
        Ok(answer(self.send(&request)?, error_field))
    }

    /// The organizations: the fixed list, or the endpoint's first page.
    pub fn organizations(&self) -> Result<Vec<Organization>, Error> {
        match &self.settings.orgs {
            Orgs::None => Ok(Vec::new()),
            Orgs::Fixed(list) => Ok(list.clone()),
            Orgs::Endpoint {
                path,
                records,
                id_field,
                name_field,
            } => {
                let unscoped = Api {
                    settings: self.settings,
                    organization: None,
                };
                let (_, body) = self.get_json(&unscoped.url(path, &[])?)?;
                let mut out = Vec::new();
                for item in records_of(&body, records)? {
                    let field = |f: &str| key_text(at_path(item, &crate::settings::dotted(f)));
                    let Some(id) = field(id_field) else { continue };
                    out.push(Organization {
                        name: field(name_field).unwrap_or_else(|| id.clone()),
                        id,
                        kind: "organization".to_owned(),
                    });
                }
                Ok(out)
            }
        }
    }
}

fn answer(response: Response, error_field: Option<&[String]>) -> Answer {
    if (200..300).contains(&response.status) {
        Answer::Ok(response)
    } else {
        Answer::Refused(RecordError::new(format!(
            "HTTP {}: {}",
            response.status,
            server_message(&response.body, error_field)
        )))
    }
}

/// What a refusing server says: the `error_field`, else a usual field
/// (`message`, `error`, `detail`, `title`, `errors`), else the body text; at
/// most 500 characters.
pub fn server_message(body: &[u8], error_field: Option<&[String]>) -> String {
    let from_json = serde_json::from_slice::<Json>(body).ok().and_then(|json| {
        let found = match error_field {
            Some(path) => at_path(&json, path),
            None => ["message", "error", "detail", "title", "errors"]
                .iter()
                .find_map(|k| json.get(k).filter(|v| !v.is_null())),
        }?;
        Some(match found {
            Json::String(s) => s.clone(),
            // `{"error": {"message": "..."}}`
            Json::Object(m) => match m.get("message") {
                Some(Json::String(s)) => s.clone(),
                _ => found.to_string(),
            },
            other => other.to_string(),
        })
    });
    let mut text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    if text.is_empty() {
        text = "(empty body)".to_owned();
    }
    if text.chars().count() > 500 {
        text = text.chars().take(500).collect::<String>() + "…";
    }
    text
}

/// `url` with `params` appended (encoded) after its own query, if any.
pub fn with_query(mut url: String, params: &[(&str, &str)]) -> String {
    for (k, v) in params {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&http::encode(k));
        url.push('=');
        url.push_str(&http::encode(v));
    }
    url
}

/// A URL without its query, for messages (a query may carry anything).
pub fn without_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// Resolves a `Link` target or a next URL against the request's URL: absolute
/// as it is, `/path` on the same origin.
pub fn resolve(base: &str, target: &str) -> String {
    if target.starts_with("http://") || target.starts_with("https://") {
        return target.to_owned();
    }
    let origin_end = base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(base.len());
    if target.starts_with('/') {
        format!("{}{target}", &base[..origin_end])
    } else {
        let dir_end = without_query(base)
            .rfind('/')
            .filter(|&i| i >= origin_end)
            .unwrap_or(origin_end);
        format!("{}/{target}", &base[..dir_end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages() {
        assert_eq!(
            server_message(br#"{"error":"email is invalid"}"#, None),
            "email is invalid"
        );
        assert_eq!(
            server_message(br#"{"error":{"message":"nope","code":3}}"#, None),
            "nope"
        );
        assert_eq!(
            server_message(
                br#"{"problems":[{"why":"x"}]}"#,
                Some(&["problems".to_owned(), "0".to_owned(), "why".to_owned()])
            ),
            "x"
        );
        assert_eq!(server_message(b"plain words\n", None), "plain words");
        assert_eq!(server_message(b"", None), "(empty body)");
    }

    #[test]
    fn urls() {
        assert_eq!(
            with_query("http://a/x?s=1".into(), &[("q", "a b"), ("_page", "2")]),
            "http://a/x?s=1&q=a%20b&_page=2"
        );
        assert_eq!(resolve("http://a:1/v1/x?p=1", "/y?p=2"), "http://a:1/y?p=2");
        assert_eq!(
            resolve("http://a:1/v1/x?p=1", "z?p=2"),
            "http://a:1/v1/z?p=2"
        );
        assert_eq!(resolve("http://a:1/v1/x", "https://b/"), "https://b/");
    }
}
