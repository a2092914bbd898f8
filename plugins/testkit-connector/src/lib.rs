//! `testkit`: a weir connector for the host's own tests. Not bundled into the
//! product.
//!
//! What it is: a source of generated records (entity `people`: `id`, `name`,
//! `email`, as many as the `count` option says), a destination that remembers
//! keys in memory to answer inserted/updated and rejects records on demand, and a
//! set of hostile `mode`s (endless loop, unbounded memory, unbounded recursion,
//! panic, reading or writing files, a log flood) acted out in `check`, `read` and
//! `upsert`, so the host can prove its sandbox holds. With `fetch_url`, `check`
//! and `read` also fetch a URL through the host's `http` import and log what came
//! back, so the host can prove its HTTP capability (allow-list, credentials,
//! limits).
//!
//! What it is not: a real connector. It reads no system and its writer stores
//! nothing.

mod hostile;

use std::collections::HashSet;

use weir_sdk::*;

use hostile::{MODES, Mode, act, busy};

const ENTITY: &str = "people";

struct Options {
    count: u64,
    mode: Mode,
    reject_field: String,
    reject_contains: Option<String>,
    reject_all: bool,
}

impl Options {
    fn from_config(config: &Config) -> Result<Options, Error> {
        Ok(Options {
            count: config.parse_or("count", 10)?,
            mode: Mode::from_config(config)?,
            reject_field: config.get_or("reject_field", "email").to_owned(),
            reject_contains: config.get("reject_contains").map(str::to_owned),
            reject_all: config.parse_or("reject_all", false)?,
        })
    }
}

/// The mode for one call: `mode_calls` (comma list of `check`, `read`,
/// `upsert`; default all three) limits where the mode acts, so a test can let a
/// connection pass validation and misbehave only while writing.
fn mode_for(config: &Config, call: &str, mode: Mode) -> Mode {
    let calls = config.list("mode_calls");
    if calls.is_empty() || calls.iter().any(|c| c == call) {
        mode
    } else {
        Mode::Ok
    }
}

/// The `people` schema; `required` (a comma list) marks more fields mandatory,
/// `extra_fields` (`name:type,...`) adds fields, for validation tests.
fn schema_with(config: &Config) -> Result<EntitySchema, Error> {
    let mut entity = schema();
    let required = config.list("required");
    for spec in config.list("extra_fields") {
        let (name, ty) = spec.split_once(':').unwrap_or((spec.as_str(), "text"));
        let ty = FieldType::from_name(ty)
            .ok_or_else(|| Error::config(format!("extra_fields: unknown type `{ty}`")))?;
        entity.fields.push(FieldSchema::new(name, ty));
    }
    for f in &mut entity.fields {
        if required.contains(&f.name) {
            f.required = true;
        }
    }
    Ok(entity)
}

fn schema() -> EntitySchema {
    EntitySchema {
        name: ENTITY.to_owned(),
        fields: vec![
            FieldSchema::new("id", FieldType::Integer).required(),
            FieldSchema::new("name", FieldType::Text),
            FieldSchema::new("email", FieldType::Text),
        ],
        key_fields: vec!["id".to_owned()],
        readable: true,
        writable: true,
    }
}

/// The page of records `cursor..` (ids from 1), at most `max` of them. Built
/// column by column, so the connector's own cost stays out of the host's
/// throughput measurements.
fn page(count: u64, cursor: Option<&str>, max: u32) -> Result<ReadPage, Error> {
    let start: u64 = match cursor {
        None => 1,
        Some(c) => c.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
            Error::config(format!(
                "entity `{ENTITY}`: cursor `{c}` is not a record id"
            ))
        })?,
    };
    let end = count.min(start.saturating_add(u64::from(max)).saturating_sub(1));
    let ids: Vec<i64> = (start..=end).map(|id| id as i64).collect();
    let mut names = VarData::with_capacity(ids.len(), ids.len() * 12);
    let mut emails = VarData::with_capacity(ids.len(), ids.len() * 24);
    for id in &ids {
        names.push(format!("Person {id}").as_bytes());
        emails.push(format!("person{id}@example.com").as_bytes());
    }
    let next = start + ids.len() as u64;
    let column = |name: &str, data| Column {
        name: name.to_owned(),
        data,
        nulls: Vec::new(),
    };
    Ok(ReadPage {
        records: Batch {
            len: ids.len(),
            columns: vec![
                column("id", ColumnData::Integer(ids)),
                column("name", ColumnData::Text(names)),
                column("email", ColumnData::Text(emails)),
            ],
        },
        rejected: Vec::new(),
        next_cursor: Some(next.to_string()),
        done: next > count,
    })
}

/// The in-memory destination: it remembers the keys it has seen, per writer.
struct TestkitWriter {
    options: Options,
    config: Config,
    key_fields: Vec<String>,
    keys: HashSet<String>,
}

impl TestkitWriter {
    fn outcome(&mut self, row: Row<'_>) -> UpsertOutcome {
        let field = &self.options.reject_field;
        if self.options.reject_all {
            return UpsertOutcome::Failed(RecordError::field(
                field,
                "rejected by testkit: reject_all is set",
            ));
        }
        if let Some(needle) = &self.options.reject_contains {
            let value = row.get(field).map(|v| v.to_text()).unwrap_or_default();
            if value.contains(needle.as_str()) {
                return UpsertOutcome::Failed(RecordError::field(
                    field,
                    format!("rejected by testkit: `{value}` contains `{needle}`"),
                ));
            }
        }
        // Without key fields nothing can match: every record is new. `broken =
        // non-idempotent` forgets keys, for the conformance suite's own tests.
        if self.key_fields.is_empty()
            || self.config.get("broken") == Some("non-idempotent")
            || self.keys.insert(row.key(&self.key_fields))
        {
            UpsertOutcome::Inserted
        } else {
            UpsertOutcome::Updated
        }
    }
}

impl Writer for TestkitWriter {
    fn upsert(&mut self, records: Batch) -> Result<Vec<UpsertOutcome>, Error> {
        act(
            mode_for(&self.config, "upsert", self.options.mode),
            &self.config,
        )?;
        // `upsert_spin`: busy work per batch, a slow destination.
        busy(self.config.parse_or("upsert_spin", 0)?);
        let mut outcomes: Vec<UpsertOutcome> =
            records.rows().map(|row| self.outcome(row)).collect();
        // `broken = outcome-count` breaks the contract on purpose.
        if self.config.get("broken") == Some("outcome-count") {
            outcomes.pop();
        }
        Ok(outcomes)
    }
}

struct Testkit;

impl Connector for Testkit {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "testkit",
            env!("CARGO_PKG_VERSION"),
            "For the host's tests: generated `people` records, an in-memory destination, and hostile modes.",
        )
        .option(ConfigField::new("count", "How many records the source generates.").default_value("10"))
        .option(ConfigField::new("mode", &format!("How to misbehave in check, read and upsert: {MODES}.")).default_value("ok"))
        .option(ConfigField::new("path", "The file that modes `open` and `write-outside` try."))
        .option(ConfigField::new("reject_field", "The field that rejection looks at.").default_value("email"))
        .option(ConfigField::new("reject_contains", "Reject records whose `reject_field` contains this text."))
        .option(ConfigField::new("reject_all", "Reject every record (`true` or `false`).").default_value("false"))
        .option(ConfigField::new("organizations", "Organizations to list (comma-separated ids)."))
        .option(ConfigField::new("required", "More fields of `people` to declare mandatory (comma-separated)."))
        .option(ConfigField::new("extra_fields", "More fields of `people`, as `name:type` (comma-separated)."))
        .option(ConfigField::new("broken", "Break the contract on purpose: `non-idempotent` or `outcome-count`."))
        .option(ConfigField::new("upsert_spin", "Busy-loop iterations per upserted batch (slows the destination down)."))
        .option(ConfigField::new("read_spin", "Busy-loop iterations per page read (slows the source down)."))
        .option(ConfigField::new("malform_read", "Break the contract in read's page: utf8, offsets, huge-len; or lie about a type: lying-type (an `age` column of text)."))
        .option(ConfigField::new("mode_calls", "Where `mode` acts: a comma list of check, read, upsert (default all)."))
        .option(ConfigField::new("refuse_check", "Fail `check` with this reason, as a refused login would."))
        .option(ConfigField::new("down_if", "While this file exists under `/data`, fail check, read and open_writer with a transient connection error, as an unreachable server would."))
        .option(ConfigField::new("fetch_url", "In check and read, send a request to this URL through the host's `http` import and log the response (`http response`: status, headers, body)."))
        .option(ConfigField::new("fetch_method", "The method of the `fetch_url` request.").default_value("GET"))
        .option(ConfigField::new("fetch_headers", "Headers of the `fetch_url` request: `Name: value` pairs separated by `|`."))
        .option(ConfigField::new("fetch_body", "The body of the `fetch_url` request."))
        .option(ConfigField::new("fetch_times", "How many requests each check or read sends.").default_value("1"))
        .option(ConfigField::new("api_secret", "A credential the testkit never uses: declared secret, for the host's tests of secret options.").secret())
        .capability(Capability::Files)
        .capability(Capability::Http)
    }

    fn check(config: &Config) -> Result<(), Error> {
        let options = Options::from_config(config)?;
        down_if(config)?;
        fetch(config)?;
        if let Some(reason) = config.get("refuse_check") {
            return Err(Error::connection(reason.to_owned()));
        }
        act(mode_for(config, "check", options.mode), config)
    }

    fn organizations(config: &Config) -> Result<Vec<Organization>, Error> {
        Ok(config
            .list("organizations")
            .into_iter()
            .map(|id| Organization {
                name: format!("Organization {id}"),
                id,
                kind: "legal entity".to_owned(),
            })
            .collect())
    }

    fn discover(config: &Config, _organization: Option<&str>) -> Result<Vec<EntitySchema>, Error> {
        Options::from_config(config)?;
        Ok(vec![schema_with(config)?])
    }

    fn read(config: &Config, request: ReadRequest) -> Result<ReadPage, Error> {
        let options = Options::from_config(config)?;
        down_if(config)?;
        fetch(config)?;
        act(mode_for(config, "read", options.mode), config)?;
        // `read_spin`: busy work per page, so a test can kill a run midway (the
        // sandbox has no clock to sleep on).
        busy(config.parse_or("read_spin", 0)?);
        if request.entity != ENTITY {
            return Err(Error::config(format!(
                "entity `{}`: testkit only has `{ENTITY}`",
                request.entity
            )));
        }
        // Rejected records are records read: leave room for them in the page.
        let rejects: u32 = config.parse_or("rejects_per_page", 0)?;
        let mut page = page(
            options.count,
            request.cursor.as_deref(),
            request.max_records.saturating_sub(rejects),
        )?;
        oversize_read(config, &mut page)?;
        Ok(malform_read(config, page))
    }

    fn open_writer(config: &Config, request: WriteRequest) -> Result<Box<dyn Writer>, Error> {
        down_if(config)?;
        let e = &request.entity;
        if e.is_empty() || e.contains('/') || e.contains('\\') || e.contains("..") {
            return Err(Error::config(format!(
                "entity `{e}`: not a valid entity name"
            )));
        }
        Ok(Box::new(TestkitWriter {
            options: Options::from_config(config)?,
            config: config.clone(),
            key_fields: request.key_fields,
            keys: HashSet::new(),
        }))
    }
}

/// `malform_read`: a page the contract forbids, so the host can prove it checks
/// what a source returns: `utf8` (text that is not UTF-8), `offsets` (an offset
/// past the end), `huge-len` (4,294,967,295 records and no columns).
fn malform_read(config: &Config, mut page: ReadPage) -> ReadPage {
    let text = page
        .records
        .columns
        .iter_mut()
        .find_map(|c| match &mut c.data {
            ColumnData::Text(v) => Some(v),
            _ => None,
        });
    match (config.get("malform_read"), text) {
        (Some("utf8"), Some(v)) if !v.data.is_empty() => v.data[0] = 0xff,
        (Some("offsets"), Some(v)) => {
            if let Some(last) = v.offsets.last_mut() {
                *last = u32::MAX;
            }
        }
        (Some("huge-len"), _) => {
            page.records.columns.clear();
            page.records.len = u32::MAX as usize;
        }
        (Some("lying-type"), _) if page.records.len > 0 => {
            // An `age` column of text, whatever the schema declares (declare it
            // `extra_fields = "age:integer"`): `abc` in the first record, the
            // others null.
            let len = page.records.len;
            let mut ages = VarData::with_capacity(len, 3);
            ages.push(b"abc");
            let mut nulls = vec![false];
            for _ in 1..len {
                ages.push(b"");
                nulls.push(true);
            }
            page.records.columns.retain(|c| c.name != "age");
            page.records.columns.push(Column {
                name: "age".to_owned(),
                data: ColumnData::Text(ages),
                nulls,
            });
        }
        _ => {}
    }
    page
}

/// Pages bigger than the contract allows, so the host can prove it bounds
/// what a source hands it: `cursor_bytes` (a next cursor of that many bytes),
/// `rejects_per_page` (that many rejected records besides the page's records,
/// each with a `reject_text_bytes` long position, key and message), `id_modulo`
/// (ids wrap around, so one read repeats keys), `long_name_at` (the record of
/// that id gets a name of `long_name_bytes`, every other a one-letter name).
fn oversize_read(config: &Config, page: &mut ReadPage) -> Result<(), Error> {
    if let Some(at) = config.get("long_name_at") {
        let at: i64 = at
            .parse()
            .map_err(|_| Error::config("long_name_at: not a number"))?;
        let bytes: usize = config.parse_or("long_name_bytes", 1_000)?;
        let ids = match &page.records.columns[0].data {
            ColumnData::Integer(ids) => ids.clone(),
            _ => Vec::new(),
        };
        let mut names = VarData::with_capacity(ids.len(), ids.len() + bytes);
        for id in ids {
            if id == at {
                names.push("n".repeat(bytes).as_bytes());
            } else {
                names.push(b"p");
            }
        }
        page.records.columns[1].data = ColumnData::Text(names);
    }
    if let Some(n) = config.get("cursor_bytes") {
        let n: usize = n
            .parse()
            .map_err(|_| Error::config("cursor_bytes: not a number"))?;
        page.next_cursor = Some("7".repeat(n));
    }
    let rejects: usize = config.parse_or("rejects_per_page", 0)?;
    let text: usize = config.parse_or("reject_text_bytes", 8)?;
    page.rejected.extend((0..rejects).map(|i| Rejected {
        position: format!("line {i} {}", "p".repeat(text)),
        key: Some(format!("{i}{}", "k".repeat(text))),
        error: RecordError {
            message: "m".repeat(text),
            field: Some("id".to_owned()),
        },
    }));
    let modulo: i64 = config.parse_or("id_modulo", 0)?;
    if modulo > 0
        && let Some(Column {
            data: ColumnData::Integer(ids),
            ..
        }) = page.records.columns.first_mut()
    {
        for id in ids {
            *id = (*id - 1) % modulo + 1;
        }
    }
    Ok(())
}

/// `down_if`: a marker file under the granted directory stands for "the server is
/// unreachable", so a test can take a system down and bring it back.
fn down_if(config: &Config) -> Result<(), Error> {
    match config.get("down_if") {
        Some(name) if std::path::Path::new("/data").join(name).exists() => Err(Error::transient(
            format!("connection refused: the server is down (/data/{name} exists)"),
        )),
        _ => Ok(()),
    }
}

/// `fetch_url`: sends `fetch_times` requests through the host and logs each
/// response; a failed send or a status the SDK calls an error fails the call.
fn fetch(config: &Config) -> Result<(), Error> {
    let Some(url) = config.get("fetch_url") else {
        return Ok(());
    };
    let times: u32 = config.parse_or("fetch_times", 1)?;
    for _ in 0..times {
        let mut request = http::Request::new(config.get_or("fetch_method", "GET"), url);
        for pair in config.get_or("fetch_headers", "").split('|') {
            if let Some((name, value)) = pair.split_once(':') {
                request = request.header(name.trim(), value.trim());
            }
        }
        if let Some(body) = config.get("fetch_body") {
            request = request.body(body.as_bytes());
        }
        let response = match http::send(&request) {
            Ok(r) => r,
            Err(e) => {
                let error = http::error(e);
                log::warn("http failed", &[("error", &error.to_string())]);
                return Err(error);
            }
        };
        let headers: Vec<String> = response
            .headers
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let body = String::from_utf8_lossy(&response.body);
        let shown: String = body.chars().take(2000).collect();
        log::info(
            "http response",
            &[
                ("status", &response.status.to_string()),
                ("headers", &headers.join(";")),
                ("bytes", &response.body.len().to_string()),
                ("body", &shown),
            ],
        );
        http::check_status(&response)?;
    }
    Ok(())
}

export_connector!(Testkit);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        )
    }

    fn read(pairs: &[(&str, &str)], cursor: Option<&str>, max: u32) -> Result<ReadPage, Error> {
        Testkit::read(
            &config(pairs),
            ReadRequest {
                entity: ENTITY.into(),
                organization: None,
                cursor: cursor.map(str::to_owned),
                max_records: max,
            },
        )
    }

    #[test]
    fn pages_through_generated_records() {
        let mut cursor = None;
        let mut ids = Vec::new();
        let mut pages = 0;
        loop {
            let p = read(&[("count", "25")], cursor.as_deref(), 10).unwrap();
            p.records.validate().unwrap();
            pages += 1;
            ids.extend(p.records.rows().map(|r| r.get("id").unwrap()));
            cursor = p.next_cursor;
            if p.done {
                break;
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(ids, (1..=25).map(Value::Integer).collect::<Vec<_>>());
        assert_eq!(cursor.as_deref(), Some("26"));
        let p = read(&[], Some("7"), 2).unwrap();
        let row = p.records.row(0);
        assert_eq!(row.get("id"), Some(Value::Integer(7)));
        assert_eq!(row.text("name"), Some("Person 7"));
        assert_eq!(row.text("email"), Some("person7@example.com"));
        assert!(!p.done);
        let p = read(&[], Some("9"), 2).unwrap();
        assert!(p.done && p.records.len() == 2);
        let p = read(&[("count", "0")], None, 5).unwrap();
        assert!(p.done && p.records.is_empty());
    }

    #[test]
    fn read_errors() {
        assert!(matches!(
            read(&[], Some("0"), 5),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            read(&[("count", "x")], None, 5),
            Err(Error::InvalidConfig(_))
        ));
        let err = Testkit::read(
            &Config::default(),
            ReadRequest {
                entity: "other".into(),
                organization: None,
                cursor: None,
                max_records: 1,
            },
        )
        .unwrap_err();
        assert!(matches!(&err, Error::InvalidConfig(m) if m.contains("`other`")));
        assert_eq!(
            Testkit::discover(&Config::default(), None).unwrap(),
            vec![schema()]
        );
    }

    fn writer(pairs: &[(&str, &str)], keys: &[&str]) -> Box<dyn Writer> {
        Testkit::open_writer(
            &config(pairs),
            WriteRequest {
                entity: "anything".into(),
                organization: None,
                key_fields: keys.iter().map(|k| (*k).to_owned()).collect(),
            },
        )
        .unwrap()
    }

    fn people(ids: &[i64]) -> Batch {
        read(&[("count", "100")], None, 100)
            .unwrap()
            .records
            .filter(&(1..=100).map(|i| ids.contains(&i)).collect::<Vec<_>>())
    }

    #[test]
    fn writer_answers_inserted_then_updated() {
        let mut w = writer(&[], &["id"]);
        use UpsertOutcome::*;
        assert_eq!(w.upsert(people(&[1, 2])).unwrap(), vec![Inserted, Inserted]);
        assert_eq!(w.upsert(people(&[2, 3])).unwrap(), vec![Updated, Inserted]);
        // A fresh writer remembers nothing.
        assert_eq!(
            writer(&[], &["id"]).upsert(people(&[1])).unwrap(),
            vec![Inserted]
        );
        let mut nokeys = writer(&[], &[]);
        assert_eq!(nokeys.upsert(people(&[1])).unwrap(), vec![Inserted]);
        assert_eq!(nokeys.upsert(people(&[1])).unwrap(), vec![Inserted]);
        w.finish().unwrap();
    }

    #[test]
    fn writer_rejects_on_demand() {
        let mut w = writer(&[("reject_contains", "person2")], &["id"]);
        let out = w.upsert(people(&[1, 2, 20])).unwrap();
        assert_eq!(out[0], UpsertOutcome::Inserted);
        assert_eq!(
            out[1],
            UpsertOutcome::Failed(RecordError::field(
                "email",
                "rejected by testkit: `person2@example.com` contains `person2`"
            ))
        );
        assert!(matches!(&out[2], UpsertOutcome::Failed(e) if e.field.as_deref() == Some("email")));
        let mut w = writer(&[("reject_field", "id"), ("reject_contains", "3")], &["id"]);
        let out = w.upsert(people(&[3, 4])).unwrap();
        assert!(matches!(&out[0], UpsertOutcome::Failed(e) if e.field.as_deref() == Some("id")));
        let mut w = writer(&[("reject_all", "true")], &["id"]);
        let out = w.upsert(people(&[1, 2])).unwrap();
        assert!(out.iter().all(|o| matches!(o, UpsertOutcome::Failed(_))));
    }

    #[test]
    fn modes_apply_to_check_read_and_upsert() {
        let cfg = [("mode", "open"), ("path", "/definitely/not/here")];
        for result in [
            Testkit::check(&config(&cfg)),
            read(&cfg, None, 1).map(drop),
            writer(&cfg, &["id"]).upsert(people(&[1])).map(drop),
        ] {
            assert!(
                matches!(result, Err(Error::InvalidConfig(m)) if m.starts_with("cannot open /definitely/not/here"))
            );
        }
        assert!(Testkit::check(&Config::default()).is_ok());
    }
}
