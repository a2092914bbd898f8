"""A weir transform in Python with the weir-plugin helper: looks a code up in a
table from the configuration (`country = FR` → `country_name = France`).

Build: see README.md (componentize-py -d wit -w transform-plugin componentize transform).
"""
from weir_plugin import TEXT, Field, InvalidConfig, Option, RecordFailed, log
import weir_plugin


def table(config):
    """`FR=France;DE=Germany` → {"FR": "France", "DE": "Germany"}."""
    pairs = {}
    for item in config.require("table").split(";"):
        code, sep, name = item.partition("=")
        if not sep or not code.strip():
            raise InvalidConfig(f"option `table`: `{item}` is not CODE=NAME")
        pairs[code.strip()] = name.strip()
    return pairs


class Transform(weir_plugin.Transform):
    name = "country-lookup"
    version = "0.1.0"
    description = "Adds the name of a code from a lookup table (Python, weir-plugin helper)."
    options = [
        Option("field", "The field holding the code.", default="country"),
        Option("into", "The field to add with the looked-up name.", default="country_name"),
        Option("table", "CODE=NAME pairs separated by `;`.", required=True),
        Option("missing", "A code not in the table: `fail` the record or leave the name `null`.", default="fail"),
    ]

    def output_fields(self, config, fields):
        if not any(f.name == config["field"] for f in fields):
            raise InvalidConfig(f"no input field `{config['field']}`")
        table(config)
        return [f for f in fields if f.name != config["into"]] + [Field(config["into"], TEXT)]

    # Columnar: one list per field, no dict per record (the fast path).
    def transform_columns(self, config, columns, n, failures):
        lookup = table(config)
        codes = columns[config["field"]]
        names = []
        for i, code in enumerate(codes):
            name = lookup.get(code) if code is not None else None
            if code is not None and name is None and config["missing"] == "fail":
                failures[i] = RecordFailed(f"no entry for `{code}` in the lookup table", config["field"])
            names.append(name)
        unknown = sum(1 for c in codes if c is not None and c not in lookup)
        if unknown:
            log.warn("codes missing from the table", count=unknown)
        columns[config["into"]] = names
        return columns
