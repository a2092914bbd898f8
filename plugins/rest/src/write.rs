//! Writing: upsert by key, one record at a time — look it up, then `PUT`/`PATCH`
//! it where it exists, else `POST` it.
//!
//! A 4xx answer (other than 401/403) fails that record with the server's
//! message; 401/403, 429, 5xx and transport failures fail the call (transient
//! where retrying may help), so nothing is reported as written that was not.
//! Upserts are idempotent: a batch sent again after a failed call updates what
//! the first attempt created.

use serde_json::Value as Json;
use weir_sdk::http::encode;
use weir_sdk::{Batch, Error, RecordError, Row, UpsertOutcome, Value, Writer};

use crate::api::{Answer, Api};
use crate::settings::{Entity, Lookup, Settings};
use crate::values::{at_path, key_text, object, records_of};

pub struct RestWriter {
    pub settings: Settings,
    pub entity: Entity,
    pub organization: Option<String>,
    pub key_fields: Vec<String>,
}

impl RestWriter {
    pub fn open(
        settings: Settings,
        entity: Entity,
        organization: Option<String>,
        key_fields: Vec<String>,
    ) -> Result<RestWriter, Error> {
        if key_fields.is_empty() {
            return Err(Error::config(format!(
                "entity `{}`: a REST destination needs a key to upsert by",
                entity.name
            )));
        }
        if entity.lookup == Lookup::Get && key_fields.len() > 1 {
            return Err(Error::config(format!(
                "entity `{}`: `lookup = get` finds records by one key field, the project names {} ({}); use `lookup = filter`",
                entity.name,
                key_fields.len(),
                key_fields.join(", ")
            )));
        }
        Ok(RestWriter {
            settings,
            entity,
            organization,
            key_fields,
        })
    }

    fn api(&self) -> Api<'_> {
        Api {
            settings: &self.settings,
            organization: self.organization.as_deref(),
        }
    }

    fn item_url(&self, key: &str) -> Result<String, Error> {
        self.api()
            .url(&self.entity.item_path.replace("{key}", &encode(key)), &[])
    }

    /// Where the record with these key values is, if it exists; `Err(Ok(..))`
    /// when the server refused the lookup for this record.
    fn find(
        &self,
        keys: &[(String, String)],
    ) -> Result<Result<Option<String>, RecordError>, Error> {
        let error_field = self.entity.error_field.as_deref();
        match self.entity.lookup {
            Lookup::Get => {
                let url = self.item_url(&keys[0].1)?;
                match self.api().get_record(&url, error_field)? {
                    None => Ok(Ok(None)),
                    Some(Answer::Ok(_)) => Ok(Ok(Some(url))),
                    Some(Answer::Refused(e)) => Ok(Err(e)),
                }
            }
            Lookup::Filter => {
                let url = self.api().url(&self.entity.path, keys)?;
                let response = match self.api().get_record(&url, error_field)? {
                    None => return Ok(Ok(None)),
                    Some(Answer::Refused(e)) => return Ok(Err(e)),
                    Some(Answer::Ok(r)) => r,
                };
                let body = crate::values::parse_body(&response.body)?;
                // The server's filter may be looser than equality (a prefix, a
                // case-insensitive match): check each candidate.
                let found = records_of(&body, &self.entity.records)?
                    .iter()
                    .find(|item| {
                        keys.iter()
                            .all(|(k, v)| key_text(item.get(k)).as_deref() == Some(v.as_str()))
                    });
                match found {
                    None => Ok(Ok(None)),
                    Some(item) => {
                        let id_path = crate::settings::dotted(&self.entity.id_field);
                        match key_text(at_path(item, &id_path)) {
                            Some(id) => Ok(Ok(Some(self.item_url(&id)?))),
                            None => Ok(Err(RecordError::new(format!(
                                "the record found by key has no `{}` to address it by (option `id_field`)",
                                self.entity.id_field
                            )))),
                        }
                    }
                }
            }
        }
    }

    fn upsert_one(&self, row: &Row<'_>) -> Result<UpsertOutcome, Error> {
        let mut keys = Vec::with_capacity(self.key_fields.len());
        for k in &self.key_fields {
            match row.get(k) {
                None | Some(Value::Null) => {
                    return Ok(UpsertOutcome::Failed(RecordError::field(
                        k.as_str(),
                        "the key field is empty",
                    )));
                }
                Some(v) => {
                    let text = v.to_text();
                    if text.is_empty() {
                        return Ok(UpsertOutcome::Failed(RecordError::field(
                            k.as_str(),
                            "the key field is empty",
                        )));
                    }
                    keys.push((k.clone(), text));
                }
            }
        }
        let existing = match self.find(&keys)? {
            Ok(found) => found,
            Err(refused) => return Ok(UpsertOutcome::Failed(refused)),
        };
        let body: Json = object(row.values());
        let error_field = self.entity.error_field.as_deref();
        let (answer, outcome) = match existing {
            Some(url) => (
                self.api()
                    .send_json(&self.entity.update_method, &url, &body, error_field)?,
                UpsertOutcome::Updated,
            ),
            None => {
                let url = self.api().url(&self.entity.create_path, &[])?;
                (
                    self.api().send_json("POST", &url, &body, error_field)?,
                    UpsertOutcome::Inserted,
                )
            }
        };
        Ok(match answer {
            Answer::Ok(_) => outcome,
            Answer::Refused(e) => UpsertOutcome::Failed(e),
        })
    }
}

impl Writer for RestWriter {
    fn upsert(&mut self, records: Batch) -> Result<Vec<UpsertOutcome>, Error> {
        records.rows().map(|row| self.upsert_one(&row)).collect()
    }
}
