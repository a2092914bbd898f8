"""A weir source connector in Python with the weir-plugin helper: reads a REST
collection (json-server style: `GET /people?id_gte=6&_sort=id&_limit=7`) page by
page, keyset-paged on `id`, so the cursor is the last id read and a later run
reads only the records added since (incremental reads).

Build: see README.md (componentize-py -d wit -w connector-plugin componentize connector).
"""
import json

import weir_plugin
from weir_plugin import INTEGER, TEXT, ConnectionFailed, Entity, Field, InvalidConfig, Option, Page, log


class Connector(weir_plugin.Connector):
    name = "rest-people"
    version = "0.1.0"
    description = "Reads a REST collection page by page, incrementally by id (Python, weir-plugin helper)."
    capabilities = ["http"]
    options = [
        Option("base_url", "The API's base URL, e.g. http://127.0.0.1:3000.", required=True),
        Option("collection", "The collection to read.", default="people"),
    ]

    def entities(self, config):
        return [Entity(config["collection"],
                       [Field("id", INTEGER, required=True), Field("name", TEXT), Field("email", TEXT), Field("country", TEXT)],
                       key=["id"])]

    def url(self, config, query):
        base = config.require("base_url").rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise InvalidConfig(f"option `base_url`: `{base}` is not an http(s) URL")
        return f"{base}/{config['collection']}?{query}"

    def check_connection(self, config):
        status, _ = weir_plugin.http_get(self.url(config, "_limit=1"))
        if status != 200:
            raise ConnectionFailed(f"GET {config['collection']}: HTTP {status}", transient=False)

    def read_page(self, config, entity, cursor, max_records):
        after = int(cursor) if cursor else None
        query = f"_sort=id&_order=asc&_limit={max_records}" + (f"&id_gte={after + 1}" if after is not None else "")
        status, body = weir_plugin.http_get(self.url(config, query))
        if status != 200:
            raise ConnectionFailed(f"GET {entity.name}: HTTP {status}", transient=False)
        items = json.loads(body)
        rows = [{f: item.get(f) for f in ("id", "name", "email", "country")} for item in items]
        log.debug("page read", entity=entity.name, after=after, records=len(rows))
        last = rows[-1]["id"] if rows else after
        return Page(rows, next_cursor=None if last is None else str(last), done=len(rows) < max_records)
