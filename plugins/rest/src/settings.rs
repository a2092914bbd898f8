//! The connection's options, checked and resolved per entity.
//!
//! Connection options are plain keys (`base_url`, `entities`, ...). Entity options
//! are `<entity>.<option>` (`contacts.path = "/people"`); the same option without
//! a prefix is the default for every entity (`pagination = "link"`). Unknown keys
//! are refused, with the nearest known one, so a typo never goes unnoticed.

use weir_sdk::{Config, Error, FieldType, Organization};

/// Connection-wide options: `(name, description, default)`.
pub const CONNECTION_OPTIONS: &[(&str, &str, Option<&str>)] = &[
    (
        "base_url",
        "The API's base URL, e.g. `https://api.example.com/v1`; paths are appended to it. May contain `{organization}`. Its host must be in the connection's `grants.http_hosts`.",
        None,
    ),
    (
        "entities",
        "The entities, comma-separated: `contacts,companies`. Each is configured by `<entity>.<option>` keys (below), falling back to the option without a prefix, then to the default.",
        None,
    ),
    (
        "headers",
        "Extra request headers, `Name: value` pairs separated by `|` (e.g. `Accept: application/json`). Never credentials: those are the host's (`[connections.x.auth]`).",
        None,
    ),
    (
        "check_path",
        "What `check` GETs to prove the connection works (default: the first entity's first page, one record).",
        None,
    ),
    (
        "organizations",
        "A fixed list of organizations, `id[:name]` comma-separated (`eu:Europe,us:United States`). Used in `{organization}` and `organization_param`.",
        None,
    ),
    (
        "organizations_path",
        "Instead of a fixed list: the endpoint listing organizations (GET, one page).",
        None,
    ),
    (
        "organizations_records",
        "Where the organizations are in that response (dotted path; unset = the root array).",
        None,
    ),
    (
        "organizations_id_field",
        "The organization's id field in that response.",
        Some("id"),
    ),
    (
        "organizations_name_field",
        "The organization's name field in that response.",
        Some("name"),
    ),
    (
        "organization_param",
        "A query parameter carrying the organization id on every request (besides `{organization}` in paths).",
        None,
    ),
    (
        "sample",
        "How many records of an entity's first page make its inferred schema (when `fields` is not declared).",
        Some("100"),
    ),
];

/// Entity options: `(name, description, default)`. `{entity}` in a default is
/// the entity's name.
pub const ENTITY_OPTIONS: &[(&str, &str, Option<&str>)] = &[
    (
        "path",
        "The entity's list endpoint, relative to `base_url` (or an absolute URL).",
        Some("/{entity}"),
    ),
    (
        "item_path",
        "One record's endpoint; `{key}` is the key's value (URL-encoded). Used by `lookup = get` and for updates.",
        Some("<path>/{key}"),
    ),
    (
        "create_path",
        "Where new records are POSTed.",
        Some("<path>"),
    ),
    (
        "records",
        "Where the records are in a list response: a dotted path (`data.items`); unset = the response is the array.",
        None,
    ),
    (
        "key",
        "The key field (the record's identity, as discovered; writers upsert by the project's key).",
        Some("id"),
    ),
    (
        "fields",
        "A declared schema, `name:type` comma-separated (`id:integer,name:text,updated_at:timestamp`); types boolean, integer, float, decimal, text, timestamp (RFC 3339 text). Without it the schema is inferred from the first page; an entity with no records and no `fields` is not discovered.",
        None,
    ),
    (
        "pagination",
        "`none` (one request), `page` (page number and size parameters), `offset` (offset and size parameters), `cursor` (a next-cursor field in the body), or `link` (RFC 5988 `Link: <...>; rel=\"next\"` header).",
        Some("none"),
    ),
    (
        "page_size",
        "Records asked per request (default: the engine's batch size).",
        None,
    ),
    (
        "page_param",
        "The page number parameter (`page`; also the first request of `link`, empty to omit).",
        Some("_page"),
    ),
    ("first_page", "The number of the first page.", Some("1")),
    (
        "limit_param",
        "The page size parameter (`page`, `offset`, `cursor`, `link`; empty to omit).",
        Some("_limit"),
    ),
    (
        "offset_param",
        "The offset parameter (`offset`; counts records from 0).",
        Some("_start"),
    ),
    (
        "cursor_field",
        "`cursor`: the dotted path of the next cursor in the body; null, missing or empty ends the listing. A value starting with `http://`, `https://` or `/` is followed as the next URL.",
        None,
    ),
    (
        "cursor_param",
        "`cursor`: the query parameter the cursor is sent back in.",
        Some("cursor"),
    ),
    (
        "updated_field",
        "Incremental reads: the record field holding its last-modified time (or version). The read cursor remembers the largest value seen; a read resumed from it asks only for records at or after it.",
        None,
    ),
    (
        "updated_param",
        "Incremental reads: the query parameter that filters on `updated_field`.",
        Some("<updated_field>_gte"),
    ),
    (
        "params",
        "Extra query parameters on list requests: `a=1&b=2`.",
        None,
    ),
    (
        "lookup",
        "How a writer finds an existing record: `get` (GET `item_path`; 404 = absent) or `filter` (GET `path?<key>=<value>`; an empty list = absent; updates go to `item_path` with the found record's `id_field`).",
        Some("get"),
    ),
    (
        "id_field",
        "`lookup = filter`: the field of a found record that fills `{key}` in `item_path`.",
        Some("id"),
    ),
    (
        "update_method",
        "`PUT` (replace) or `PATCH` (merge) for records that exist.",
        Some("PUT"),
    ),
    (
        "error_field",
        "Where a 4xx response body says what is wrong (dotted path); default: the first of `message`, `error`, `detail`, `title`, `errors`, else the body text.",
        None,
    ),
];

/// How an entity's list is paged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pagination {
    None,
    Page,
    Offset,
    Cursor,
    Link,
}

/// How a writer finds an existing record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Get,
    Filter,
}

/// Where the organizations come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Orgs {
    None,
    Fixed(Vec<Organization>),
    Endpoint {
        path: String,
        records: Vec<String>,
        id_field: String,
        name_field: String,
    },
}

/// The connection's options.
#[derive(Clone, Debug)]
pub struct Settings {
    pub base_url: String,
    pub entities: Vec<String>,
    pub headers: Vec<(String, String)>,
    pub check_path: Option<String>,
    pub orgs: Orgs,
    pub organization_param: Option<String>,
    pub sample: u32,
    config: Config,
}

/// One entity's options, defaults applied.
#[derive(Clone, Debug)]
pub struct Entity {
    pub name: String,
    pub path: String,
    pub item_path: String,
    pub create_path: String,
    pub records: Vec<String>,
    pub key: String,
    pub fields: Option<Vec<(String, FieldType)>>,
    pub pagination: Pagination,
    pub page_size: Option<u32>,
    pub page_param: String,
    pub first_page: u64,
    pub limit_param: String,
    pub offset_param: String,
    pub cursor_field: Vec<String>,
    pub cursor_param: String,
    pub updated_field: Option<String>,
    pub updated_param: String,
    pub params: Vec<(String, String)>,
    pub lookup: Lookup,
    pub id_field: String,
    pub update_method: String,
    pub error_field: Option<Vec<String>>,
}

impl Settings {
    pub fn parse(config: &Config) -> Result<Settings, Error> {
        let entities = config.list("entities");
        if entities.is_empty() {
            return Err(Error::config(
                "missing configuration option `entities` (e.g. `contacts,companies`)",
            ));
        }
        for e in &entities {
            if e.contains(['.', '/', '?', '#', '{', '}']) {
                return Err(Error::config(format!(
                    "option `entities`: `{e}` may not contain `.`, `/`, `?`, `#` or braces"
                )));
            }
        }
        check_keys(config, &entities)?;
        let base_url = config.require("base_url")?.trim().trim_end_matches('/');
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(Error::config(format!(
                "option `base_url`: `{base_url}` is not an http:// or https:// URL"
            )));
        }
        let headers = match config.get("headers") {
            None => Vec::new(),
            Some(text) => text
                .split('|')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(|h| {
                    h.split_once(':')
                        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                        .ok_or_else(|| {
                            Error::config(format!("option `headers`: `{h}` is not `Name: value`"))
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        let orgs = match (
            config.get("organizations"),
            config.get("organizations_path"),
        ) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "options `organizations` and `organizations_path`: set one, not both",
                ));
            }
            (Some(list), None) => Orgs::Fixed(
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|item| {
                        let (id, name) = item.split_once(':').unwrap_or((item, item));
                        Organization {
                            id: id.trim().to_owned(),
                            name: name.trim().to_owned(),
                            kind: "organization".to_owned(),
                        }
                    })
                    .collect(),
            ),
            (None, Some(path)) => Orgs::Endpoint {
                path: path.to_owned(),
                records: dotted(config.get_or("organizations_records", "")),
                id_field: config.get_or("organizations_id_field", "id").to_owned(),
                name_field: config.get_or("organizations_name_field", "name").to_owned(),
            },
            (None, None) => Orgs::None,
        };
        let sample: u32 = config.parse_or("sample", 100)?;
        if sample == 0 {
            return Err(Error::config("option `sample` must be at least 1"));
        }
        let settings = Settings {
            base_url: base_url.to_owned(),
            entities,
            headers,
            check_path: config.get("check_path").map(str::to_owned),
            orgs,
            organization_param: config
                .get("organization_param")
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
            sample,
            config: config.clone(),
        };
        // Every entity's options are checked up front: a bad one fails `check`.
        for e in &settings.entities {
            settings.entity(e)?;
        }
        Ok(settings)
    }

    /// An entity's options; a configuration error for an entity not listed.
    pub fn entity(&self, name: &str) -> Result<Entity, Error> {
        if !self.entities.iter().any(|e| e == name) {
            return Err(Error::config(format!(
                "entity `{name}` is not in option `entities` ({})",
                self.entities.join(", ")
            )));
        }
        let get = |opt: &str| -> Option<&str> {
            self.config
                .get(&format!("{name}.{opt}"))
                .or_else(|| self.config.get(opt))
        };
        let bad = |opt: &str, why: String| {
            Error::config(format!("entity `{name}`, option `{opt}`: {why}"))
        };
        let path = get("path")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("/{name}"));
        let item_path = get("item_path")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{}/{{key}}", path.trim_end_matches('/')));
        if !item_path.contains("{key}") {
            return Err(bad("item_path", format!("`{item_path}` has no `{{key}}`")));
        }
        let create_path = get("create_path").unwrap_or(&path).to_owned();
        let pagination = match get("pagination").unwrap_or("none").trim() {
            "none" => Pagination::None,
            "page" => Pagination::Page,
            "offset" => Pagination::Offset,
            "cursor" => Pagination::Cursor,
            "link" => Pagination::Link,
            other => {
                return Err(bad(
                    "pagination",
                    format!("`{other}` is not none, page, offset, cursor or link"),
                ));
            }
        };
        let number = |opt: &str| -> Result<Option<u64>, Error> {
            get(opt)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| bad(opt, format!("`{v}` is not a whole number")))
                })
                .transpose()
        };
        let page_size = match number("page_size")? {
            Some(0) => return Err(bad("page_size", "must be at least 1".into())),
            Some(n) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
            None => None,
        };
        let cursor_field = dotted(get("cursor_field").unwrap_or(""));
        if pagination == Pagination::Cursor && cursor_field.is_empty() {
            return Err(bad(
                "cursor_field",
                "`pagination = cursor` needs the body field holding the next cursor".into(),
            ));
        }
        let updated_field = get("updated_field")
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_owned);
        let updated_param = get("updated_param")
            .map(str::to_owned)
            .or_else(|| updated_field.as_ref().map(|f| format!("{f}_gte")))
            .unwrap_or_default();
        let params = match get("params") {
            None => Vec::new(),
            Some(text) => text
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (k.to_owned(), v.to_owned())
                })
                .collect(),
        };
        let lookup = match get("lookup").unwrap_or("get").trim() {
            "get" => Lookup::Get,
            "filter" => Lookup::Filter,
            other => return Err(bad("lookup", format!("`{other}` is not get or filter"))),
        };
        let update_method = get("update_method")
            .unwrap_or("PUT")
            .trim()
            .to_ascii_uppercase();
        if update_method != "PUT" && update_method != "PATCH" {
            return Err(bad(
                "update_method",
                format!("`{update_method}` is not PUT or PATCH"),
            ));
        }
        let fields = get("fields")
            .map(|f| parse_fields(f).map_err(|why| bad("fields", why)))
            .transpose()?;
        Ok(Entity {
            name: name.to_owned(),
            path,
            item_path,
            create_path,
            records: dotted(get("records").unwrap_or("")),
            key: get("key").unwrap_or("id").trim().to_owned(),
            fields,
            pagination,
            page_size,
            page_param: get("page_param").unwrap_or("_page").to_owned(),
            first_page: number("first_page")?.unwrap_or(1),
            limit_param: get("limit_param").unwrap_or("_limit").to_owned(),
            offset_param: get("offset_param").unwrap_or("_start").to_owned(),
            cursor_field,
            cursor_param: get("cursor_param").unwrap_or("cursor").to_owned(),
            updated_field,
            updated_param,
            params,
            lookup,
            id_field: get("id_field").unwrap_or("id").to_owned(),
            update_method,
            error_field: get("error_field").map(dotted).filter(|p| !p.is_empty()),
        })
    }
}

/// A dotted path (`data.items`) as its segments; empty for the root.
pub fn dotted(path: &str) -> Vec<String> {
    path.split('.')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `name:type,...` (the last colon splits, so a name may contain one).
pub fn parse_fields(text: &str) -> Result<Vec<(String, FieldType)>, String> {
    let mut out: Vec<(String, FieldType)> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, ty) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("`{item}`: expected `name:type`"))?;
        let (name, ty) = (name.trim(), ty.trim());
        if name.is_empty() {
            return Err(format!("`{item}`: the field name is empty"));
        }
        let ty = match FieldType::from_name(ty) {
            Some(FieldType::Bytes) | None => {
                return Err(format!(
                    "`{item}`: unknown type `{ty}` (use boolean, integer, float, decimal, text or timestamp)"
                ));
            }
            Some(t) => t,
        };
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("`{name}` is declared twice"));
        }
        out.push((name.to_owned(), ty));
    }
    if out.is_empty() {
        return Err("declares no field".to_owned());
    }
    Ok(out)
}

/// Refuses keys that are neither a connection option nor `<entity>.<entity
/// option>` / a default entity option.
fn check_keys(config: &Config, entities: &[String]) -> Result<(), Error> {
    let known = |opt: &str| ENTITY_OPTIONS.iter().any(|(n, _, _)| *n == opt);
    for (key, _) in config.entries() {
        if CONNECTION_OPTIONS.iter().any(|(n, _, _)| n == key) || known(key) {
            continue;
        }
        if let Some((entity, opt)) = key.split_once('.') {
            if entities.iter().any(|e| e == entity) && known(opt) {
                continue;
            }
            if !entities.iter().any(|e| e == entity) {
                return Err(Error::config(format!(
                    "option `{key}`: `{entity}` is not in option `entities` ({})",
                    entities.join(", ")
                )));
            }
            return Err(Error::config(format!(
                "option `{key}`: `{opt}` is not an entity option{}",
                hint(opt, ENTITY_OPTIONS.iter().map(|(n, _, _)| *n))
            )));
        }
        return Err(Error::config(format!(
            "unknown option `{key}`{}",
            hint(
                key,
                CONNECTION_OPTIONS
                    .iter()
                    .chain(ENTITY_OPTIONS)
                    .map(|(n, _, _)| *n)
            )
        )));
    }
    Ok(())
}

/// `; did you mean `x`?` for the closest name within a small edit distance.
fn hint<'a>(wanted: &str, names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| (distance(wanted, n), n))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, n)| format!("; did you mean `{n}`?"))
        .unwrap_or_default()
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let mut c = Config::default();
        for (k, v) in pairs {
            c.set(k, v);
        }
        c
    }

    #[test]
    fn entity_options_fall_back_to_defaults() {
        let s = Settings::parse(&config(&[
            ("base_url", "http://api.test/v1/"),
            ("entities", "contacts, companies"),
            ("pagination", "link"),
            ("contacts.pagination", "page"),
            ("contacts.records", "data.items"),
            ("companies.path", "/orgs/{organization}/companies"),
            ("contacts.updated_field", "updatedAt"),
        ]))
        .unwrap();
        assert_eq!(s.base_url, "http://api.test/v1");
        let c = s.entity("contacts").unwrap();
        assert_eq!(c.pagination, Pagination::Page);
        assert_eq!(c.records, ["data", "items"]);
        assert_eq!(c.item_path, "/contacts/{key}");
        assert_eq!(c.updated_param, "updatedAt_gte");
        let co = s.entity("companies").unwrap();
        assert_eq!(co.pagination, Pagination::Link);
        assert_eq!(co.item_path, "/orgs/{organization}/companies/{key}");
        assert!(co.updated_field.is_none());
        assert!(s.entity("deals").is_err());
    }

    #[test]
    fn typos_and_bad_values_are_refused_by_name() {
        let base = [("base_url", "http://api.test"), ("entities", "contacts")];
        let err = |extra: (&str, &str)| {
            let mut pairs = base.to_vec();
            pairs.push(extra);
            Settings::parse(&config(&pairs)).unwrap_err().to_string()
        };
        assert!(err(("contacts.paht", "/x")).contains("did you mean `path`?"));
        assert!(err(("deals.path", "/x")).contains("`deals` is not in option `entities`"));
        assert!(err(("pagnation", "page")).contains("did you mean `pagination`?"));
        assert!(err(("pagination", "pages")).contains("not none, page, offset"));
        assert!(err(("pagination", "cursor")).contains("cursor_field"));
        assert!(err(("fields", "id:int")).contains("unknown type `int`"));
        assert!(err(("item_path", "/x")).contains("has no `{key}`"));
        assert!(err(("update_method", "post")).contains("not PUT or PATCH"));
        assert!(
            Settings::parse(&config(&[("entities", "x"), ("base_url", "ftp://x")]))
                .unwrap_err()
                .to_string()
                .contains("not an http")
        );
    }

    #[test]
    fn fixed_organizations_and_declared_fields() {
        let s = Settings::parse(&config(&[
            ("base_url", "http://api.test"),
            ("entities", "contacts"),
            ("organizations", "eu:Europe, us"),
            ("fields", "id:integer, name:text,at:timestamp"),
        ]))
        .unwrap();
        let Orgs::Fixed(orgs) = &s.orgs else { panic!() };
        assert_eq!(
            (orgs[0].id.as_str(), orgs[0].name.as_str()),
            ("eu", "Europe")
        );
        assert_eq!((orgs[1].id.as_str(), orgs[1].name.as_str()), ("us", "us"));
        assert_eq!(
            s.entity("contacts").unwrap().fields.unwrap(),
            vec![
                ("id".into(), FieldType::Integer),
                ("name".into(), FieldType::Text),
                ("at".into(), FieldType::Timestamp)
            ]
        );
    }
}
