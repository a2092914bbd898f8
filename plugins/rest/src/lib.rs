//! `rest`: a weir connector for JSON REST APIs, as a source and as a destination,
//! through the host's `http` capability.
//!
//! What it is: each entity named in `entities` is a collection behind a list
//! endpoint. Reading pages through it (page number, offset, a cursor in the
//! body, or the `Link` header), finds the records at a path in the body, and
//! converts them to the entity's schema — declared (`fields`) or inferred from
//! the first page. With `updated_field` a read is incremental: the cursor keeps
//! the largest value seen, and a read resumed from it asks only for records
//! changed at or after it (`updated_param`, json-server style `<field>_gte` by
//! default). Writing upserts by key, one record at a time: a lookup (`GET
//! item_path`, or a filter query), then `PUT`/`PATCH` or `POST`.
//!
//! What it is not: it holds no credentials (the host adds them: bearer, basic,
//! API key, OAuth2 client credentials) and reaches only the hosts the
//! connection grants. It does not batch writes (no bulk endpoints), sends no
//! DELETE, and reads nested objects and arrays as their JSON text. A record
//! whose updated value ties the cursor is read again by the next incremental
//! read (at-least-once; upserts make that harmless).

mod api;
mod read;
mod settings;
mod values;
mod write;

use weir_sdk::*;

use api::Api;
use settings::{CONNECTION_OPTIONS, ENTITY_OPTIONS, Settings};

struct Rest;

impl Connector for Rest {
    fn info() -> PluginInfo {
        let mut info = PluginInfo::new(
            "rest",
            env!("CARGO_PKG_VERSION"),
            "JSON REST APIs through the host's HTTP capability: entities behind list endpoints, paged, read incrementally, and upserted by key (lookup, then PUT/PATCH or POST).",
        )
        .capability(Capability::Http);
        for (name, description, default) in CONNECTION_OPTIONS {
            let mut field = ConfigField::new(name, description);
            if matches!(*name, "base_url" | "entities") {
                field = field.required();
            }
            if let Some(d) = default {
                field = field.default_value(d);
            }
            info = info.option(field);
        }
        for (name, description, default) in ENTITY_OPTIONS {
            let mut field = ConfigField::new(
                name,
                &format!(
                    "Per entity (`<entity>.{name}`, or `{name}` for every entity): {description}"
                ),
            );
            if let Some(d) = default {
                field = field.default_value(d);
            }
            info = info.option(field);
        }
        info
    }

    fn check(config: &Config) -> Result<(), Error> {
        let settings = Settings::parse(config)?;
        let orgs = Api {
            settings: &settings,
            organization: None,
        }
        .organizations()?;
        let api = Api {
            settings: &settings,
            organization: orgs.first().map(|o| o.id.as_str()),
        };
        let url = match &settings.check_path {
            Some(path) => api.url(path, &[])?,
            None => read::probe_url(&api, &settings.entity(&settings.entities[0])?)?,
        };
        api.get_json(&url).map(|_| ())
    }

    fn organizations(config: &Config) -> Result<Vec<Organization>, Error> {
        let settings = Settings::parse(config)?;
        Api {
            settings: &settings,
            organization: None,
        }
        .organizations()
    }

    fn discover(config: &Config, organization: Option<&str>) -> Result<Vec<EntitySchema>, Error> {
        let settings = Settings::parse(config)?;
        let api = Api {
            settings: &settings,
            organization,
        };
        let mut out = Vec::new();
        for name in &settings.entities {
            let entity = settings.entity(name)?;
            if let Some(schema) = read::discover(&api, &entity, settings.sample)? {
                out.push(schema);
            }
        }
        Ok(out)
    }

    fn read(config: &Config, request: ReadRequest) -> Result<ReadPage, Error> {
        let settings = Settings::parse(config)?;
        let entity = settings.entity(&request.entity)?;
        let api = Api {
            settings: &settings,
            organization: request.organization.as_deref(),
        };
        read::read_page(&api, &entity, settings.sample, &request)
    }

    fn open_writer(config: &Config, request: WriteRequest) -> Result<Box<dyn Writer>, Error> {
        let settings = Settings::parse(config)?;
        let entity = settings.entity(&request.entity)?;
        let writer =
            write::RestWriter::open(settings, entity, request.organization, request.key_fields)?;
        Ok(Box::new(writer))
    }
}

export_connector!(Rest);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_documents_every_option_once() {
        let info = Rest::info();
        assert_eq!(info.name, "rest");
        assert_eq!(info.capabilities, vec![Capability::Http]);
        let mut names: Vec<&str> = info.config.iter().map(|f| f.name.as_str()).collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "no option twice");
        assert!(
            info.config
                .iter()
                .all(|f| !f.description.is_empty() && !f.secret)
        );
        let required: Vec<&str> = info
            .config
            .iter()
            .filter(|f| f.required)
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(required, ["base_url", "entities"]);
    }
}
