//! Reading: the schema (declared or inferred from a sample), list pages, and
//! the read cursor.
//!
//! The cursor is JSON text the engine keeps opaque:
//! `{"pos": {...}, "size": n, "fields": "...", "since": v, "max": v}`. `pos` is
//! where the next page is (`page`, `offset`, `url` or `token`); `size` and
//! `fields` keep the page size and the schema steady for the whole listing;
//! `since` is the `updated_field` value the listing filters on and `max` the
//! largest value seen so far. The cursor after the last page is `{"since": max}`
//! alone, so a read resumed from it starts a new listing of what changed since.

use std::cmp::Ordering;

use serde_json::{Map, Value as Json, json};
use weir_sdk::{
    BatchBuilder, EntitySchema, Error, FieldSchema, FieldType, ReadPage, ReadRequest, RecordError,
    Rejected,
};

use crate::api::{Api, resolve, without_query};
use crate::settings::{Entity, Pagination, parse_fields};
use crate::values::{infer, key_text, parse_rfc3339, records_of, to_value};

/// Where the next page is.
#[derive(Clone, Debug, PartialEq)]
enum Pos {
    Page(u64),
    Offset(u64),
    Url(String),
    Token(String),
}

#[derive(Clone, Debug, Default, PartialEq)]
struct ReadCursor {
    pos: Option<Pos>,
    size: Option<u32>,
    fields: Option<String>,
    since: Option<Json>,
    max: Option<Json>,
}

impl ReadCursor {
    fn parse(entity: &str, text: Option<&str>) -> Result<ReadCursor, Error> {
        let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
            return Ok(ReadCursor::default());
        };
        let bad = || {
            Error::config(format!(
                "entity `{entity}`: cursor `{text}` is not a cursor of this connector"
            ))
        };
        let Ok(Json::Object(m)) = serde_json::from_str::<Json>(text) else {
            return Err(bad());
        };
        let pos = match m.get("pos") {
            None | Some(Json::Null) => None,
            Some(Json::Object(p)) => Some(match p.iter().next() {
                Some((k, Json::Number(n))) if k == "page" => Pos::Page(n.as_u64().ok_or_else(bad)?),
                Some((k, Json::Number(n))) if k == "offset" => {
                    Pos::Offset(n.as_u64().ok_or_else(bad)?)
                }
                Some((k, Json::String(s))) if k == "url" => Pos::Url(s.clone()),
                Some((k, Json::String(s))) if k == "token" => Pos::Token(s.clone()),
                _ => return Err(bad()),
            }),
            Some(_) => return Err(bad()),
        };
        let size = match m.get("size") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(bad)?,
            ),
        };
        let fields = match m.get("fields") {
            None => None,
            Some(Json::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad()),
        };
        let value = |k: &str| m.get(k).filter(|v| !v.is_null()).cloned();
        Ok(ReadCursor {
            pos,
            size,
            fields,
            since: value("since"),
            max: value("max"),
        })
    }

    fn to_text(&self) -> String {
        let mut m = Map::new();
        if let Some(pos) = &self.pos {
            m.insert(
                "pos".into(),
                match pos {
                    Pos::Page(n) => json!({ "page": n }),
                    Pos::Offset(n) => json!({ "offset": n }),
                    Pos::Url(u) => json!({ "url": u }),
                    Pos::Token(t) => json!({ "token": t }),
                },
            );
        }
        if let Some(size) = self.size {
            m.insert("size".into(), json!(size));
        }
        if let Some(fields) = &self.fields {
            m.insert("fields".into(), json!(fields));
        }
        if let Some(since) = &self.since {
            m.insert("since".into(), since.clone());
        }
        if let Some(max) = &self.max {
            m.insert("max".into(), max.clone());
        }
        Json::Object(m).to_string()
    }
}

/// The URL of a page: the list endpoint with the entity's parameters, the
/// incremental filter and the paging parameters for `pos` (`None`: the first).
fn page_url(
    api: &Api,
    entity: &Entity,
    size: u32,
    since: Option<&Json>,
    pos: Option<&Pos>,
) -> Result<String, Error> {
    if let Some(Pos::Url(url)) = pos {
        return Ok(url.clone());
    }
    let mut params = entity.params.clone();
    if let Some(since) = since.and_then(|s| key_text(Some(s))) {
        params.push((entity.updated_param.clone(), since));
    }
    let mut push = |k: &str, v: String| {
        if !k.is_empty() {
            params.push((k.to_owned(), v));
        }
    };
    match (entity.pagination, pos) {
        (Pagination::None, _) => {}
        (Pagination::Page, pos) => {
            let page = match pos {
                Some(Pos::Page(n)) => *n,
                _ => entity.first_page,
            };
            push(&entity.page_param, page.to_string());
            push(&entity.limit_param, size.to_string());
        }
        (Pagination::Offset, pos) => {
            let offset = match pos {
                Some(Pos::Offset(n)) => *n,
                _ => 0,
            };
            push(&entity.offset_param, offset.to_string());
            push(&entity.limit_param, size.to_string());
        }
        (Pagination::Cursor, pos) => {
            push(&entity.limit_param, size.to_string());
            if let Some(Pos::Token(t)) = pos {
                push(&entity.cursor_param, t.clone());
            }
        }
        (Pagination::Link, _) => {
            push(&entity.page_param, entity.first_page.to_string());
            push(&entity.limit_param, size.to_string());
        }
    }
    api.url(&entity.path, &params)
}

/// The entity's fields: declared, or inferred from the first `sample` records
/// of its first page; `None` when there is nothing to infer from.
pub fn schema(
    api: &Api,
    entity: &Entity,
    sample: u32,
) -> Result<Option<Vec<(String, FieldType)>>, Error> {
    if let Some(fields) = &entity.fields {
        return Ok(Some(fields.clone()));
    }
    let url = page_url(api, entity, sample, None, None)?;
    let (_, body) = api.get_json(&url)?;
    let records = records_of(&body, &entity.records)?;
    let records = &records[..records.len().min(sample as usize)];
    let fields = infer(records);
    Ok((!fields.is_empty()).then_some(fields))
}

pub fn discover(api: &Api, entity: &Entity, sample: u32) -> Result<Option<EntitySchema>, Error> {
    let Some(fields) = schema(api, entity, sample)? else {
        return Ok(None);
    };
    Ok(Some(EntitySchema {
        name: entity.name.clone(),
        fields: fields
            .iter()
            .map(|(n, t)| FieldSchema::new(n, *t))
            .collect(),
        key_fields: vec![entity.key.clone()],
        readable: true,
        writable: true,
    }))
}

/// The first page's URL with one record, for `check`.
pub fn probe_url(api: &Api, entity: &Entity) -> Result<String, Error> {
    page_url(api, entity, 1, None, None)
}

pub fn read_page(
    api: &Api,
    entity: &Entity,
    sample: u32,
    request: &ReadRequest,
) -> Result<ReadPage, Error> {
    let mut cursor = ReadCursor::parse(&entity.name, request.cursor.as_deref())?;
    let fields = match &cursor.fields {
        Some(text) => parse_fields(text).map_err(|why| {
            Error::config(format!(
                "entity `{}`: the cursor's fields: {why}",
                entity.name
            ))
        })?,
        None => match schema(api, entity, sample)? {
            Some(fields) => fields,
            // Nothing to read, nothing to infer from.
            None => {
                return Ok(ReadPage {
                    records: BatchBuilder::new(&[]).finish(),
                    rejected: Vec::new(),
                    next_cursor: done_cursor(entity, &cursor),
                    done: true,
                });
            }
        },
    };
    let size = cursor
        .size
        .or(entity.page_size)
        .unwrap_or(request.max_records)
        .max(1);
    let url = page_url(
        api,
        entity,
        size,
        cursor.since.as_ref(),
        cursor.pos.as_ref(),
    )?;
    let (response, body) = api.get_json(&url)?;
    let items = records_of(&body, &entity.records)?;

    let names: Vec<(&str, FieldType)> = fields.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    let mut batch = BatchBuilder::with_capacity(&names, items.len());
    let mut rejected = Vec::new();
    let mut row = Vec::with_capacity(fields.len());
    let mut max = cursor.max.take().or_else(|| cursor.since.clone());
    for (i, item) in items.iter().enumerate() {
        let position = || format!("record {} of GET {url}", i + 1);
        let Json::Object(map) = item else {
            rejected.push(Rejected {
                position: position(),
                key: None,
                error: RecordError::new("not a JSON object"),
            });
            continue;
        };
        let key = key_text(map.get(&entity.key));
        row.clear();
        let mut failure = None;
        for (name, ty) in &fields {
            match to_value(*ty, map.get(name)) {
                Ok(v) => row.push(v),
                Err(why) => {
                    failure = Some(RecordError::field(name.as_str(), why));
                    break;
                }
            }
        }
        if let Some(error) = failure {
            rejected.push(Rejected {
                position: position(),
                key,
                error,
            });
            continue;
        }
        batch
            .push_row(&row)
            .map_err(|e| Error::internal(format!("building a batch: {e}")))?;
        let updated = entity.updated_field.as_ref().and_then(|f| map.get(f));
        if let Some(updated) = updated.filter(|v| !v.is_null())
            && max
                .as_ref()
                .is_none_or(|m| compare(updated, m) == Ordering::Greater)
        {
            max = Some(updated.clone());
        }
    }

    let n = items.len() as u64;
    let next = match entity.pagination {
        Pagination::None => None,
        Pagination::Page | Pagination::Offset if n < u64::from(size) => None,
        Pagination::Page => Some(Pos::Page(match cursor.pos {
            Some(Pos::Page(p)) => p + 1,
            _ => entity.first_page + 1,
        })),
        Pagination::Offset => Some(Pos::Offset(match cursor.pos {
            Some(Pos::Offset(o)) => o + n,
            _ => n,
        })),
        Pagination::Cursor => match key_text(crate::values::at_path(&body, &entity.cursor_field)) {
            None => None,
            Some(t)
                if t.starts_with("http://") || t.starts_with("https://") || t.starts_with('/') =>
            {
                Some(Pos::Url(resolve(&url, &t)))
            }
            Some(t) => Some(Pos::Token(t)),
        },
        Pagination::Link => response.link("next").map(|t| Pos::Url(resolve(&url, &t))),
    };
    if let Some(Pos::Url(next_url)) = &next
        && *next_url == url
    {
        return Err(Error::connection(format!(
            "entity `{}`: the next page of GET {} is the same page",
            entity.name,
            without_query(&url)
        )));
    }
    cursor.max = max;
    let done = next.is_none();
    let next_cursor = if done {
        done_cursor(entity, &cursor)
    } else {
        cursor.pos = next;
        cursor.size = Some(size);
        cursor.fields = Some(
            fields
                .iter()
                .map(|(n, t)| format!("{n}:{t}"))
                .collect::<Vec<_>>()
                .join(","),
        );
        Some(cursor.to_text())
    };
    Ok(ReadPage {
        records: batch.finish(),
        rejected,
        next_cursor,
        done,
    })
}

/// After the last page: `{"since": max}` for incremental entities, else none.
fn done_cursor(entity: &Entity, cursor: &ReadCursor) -> Option<String> {
    entity.updated_field.as_ref()?;
    let since = cursor.max.clone().or_else(|| cursor.since.clone());
    Some(
        ReadCursor {
            since,
            ..ReadCursor::default()
        }
        .to_text(),
    )
}

/// Orders `updated_field` values: numbers as numbers, RFC 3339 texts as
/// instants, other texts as text.
fn compare(a: &Json, b: &Json) -> Ordering {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Json::String(x), Json::String(y)) => match (parse_rfc3339(x), parse_rfc3339(y)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x.cmp(y),
        },
        _ => a.to_string().cmp(&b.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let c = ReadCursor {
            pos: Some(Pos::Url("http://a/x?_page=2".into())),
            size: Some(10),
            fields: Some("id:integer".into()),
            since: Some(json!("2024-01-01T00:00:00Z")),
            max: Some(json!(17)),
        };
        assert_eq!(ReadCursor::parse("e", Some(&c.to_text())).unwrap(), c);
        assert_eq!(ReadCursor::parse("e", None).unwrap(), ReadCursor::default());
        for bad in [
            "12",
            "{\"pos\": 3}",
            "{\"pos\": {\"page\": \"x\"}}",
            "{\"size\": 0}",
        ] {
            let e = ReadCursor::parse("e", Some(bad)).unwrap_err().to_string();
            assert!(
                e.contains("is not a cursor of this connector"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn updated_values_compare_by_kind() {
        assert_eq!(compare(&json!(10), &json!(9.5)), Ordering::Greater);
        assert_eq!(
            compare(
                &json!("2024-01-01T01:00:00+02:00"),
                &json!("2023-12-31T23:30:00Z")
            ),
            Ordering::Less
        );
        assert_eq!(compare(&json!("b"), &json!("a")), Ordering::Greater);
    }
}
