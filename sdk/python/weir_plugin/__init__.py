"""weir-plugin: write weir plugins in Python, built with componentize-py.

Subclass `Transform` or `Connector`, name your class `Transform` / `Connector` in
the module you componentize (`app.py`), and work with rows (dicts) or columns
(lists) instead of the contract's byte buffers and offsets. Raise `InvalidConfig`,
`ConnectionFailed` or `Internal` for a failed call, `RecordFailed` for one
record; log with `log.info(...)` (and `print()` — both reach weir's execution
log). Integers stay exact to 64 bits: a value that does not fit fails its
record with a message instead of trapping.

The generated bindings (`wit_world`) come from the app's build
(`componentize-py -d wit/since_v0.1.0 -w transform-plugin ...`); this module
only uses what both worlds share, plus `http` in connectors.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from componentize_py_types import Err
from wit_world.imports import log as _log
from wit_world.imports import types as _t

__all__ = [
    "BOOLEAN", "INTEGER", "FLOAT", "DECIMAL", "TEXT", "TIMESTAMP", "BYTES",
    "Option", "Field", "Entity", "Page", "Config",
    "Error", "InvalidConfig", "ConnectionFailed", "Internal", "RecordFailed",
    "log", "Transform", "Connector", "http_get",
    "rows_of", "batch_of_rows", "columns_of", "batch_of_columns",
]

S64_MIN = -(2**63)
S64_MAX = 2**63 - 1

BOOLEAN = "boolean"
INTEGER = "integer"
FLOAT = "float"
DECIMAL = "decimal"
TEXT = "text"
TIMESTAMP = "timestamp"
BYTES = "bytes"

_TYPES = {
    BOOLEAN: _t.FieldType.BOOLEAN,
    INTEGER: _t.FieldType.INTEGER,
    FLOAT: _t.FieldType.FLOAT,
    DECIMAL: _t.FieldType.DECIMAL,
    TEXT: _t.FieldType.TEXT,
    TIMESTAMP: _t.FieldType.TIMESTAMP,
    BYTES: _t.FieldType.BYTES,
}
_NAMES = {v: k for k, v in _TYPES.items()}


# ---------------------------------------------------------------- errors


class Error(Exception):
    """A whole call failed. Subclasses map to the contract's `error` variant."""

    def to_wit(self) -> Any:
        return _t.Error_Internal(str(self))


class InvalidConfig(Error):
    """The configuration or the request is wrong; never retried."""

    def to_wit(self) -> Any:
        return _t.Error_InvalidConfig(str(self))


class ConnectionFailed(Error):
    """The connection failed; `transient=True` lets weir retry."""

    def __init__(self, message: str, transient: bool = True, retry_after_ms: Optional[int] = None):
        super().__init__(message)
        self.transient = transient
        self.retry_after_ms = retry_after_ms

    def to_wit(self) -> Any:
        return _t.Error_Connection(_t.ConnectionFailure(str(self), self.transient, self.retry_after_ms))


class Internal(Error):
    """A bug in the plugin."""


class RecordFailed(Exception):
    """One record cannot be transformed (or read); the rest of the batch goes on."""

    def __init__(self, message: str, field: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def to_wit(self) -> Any:
        return _t.RecordError(self.message, self.field)


def _call(f: Callable[[], Any]) -> Any:
    """Runs an exported call: typed errors become the contract's error, and any
    other exception an `internal` error naming it — a message, not a trap."""
    try:
        return f()
    except Err:
        raise
    except Error as e:
        raise Err(e.to_wit())
    except Exception as e:  # noqa: BLE001 - the host must get a message, not a trap
        raise Err(_t.Error_Internal(f"{type(e).__name__}: {e}"))


# ---------------------------------------------------------------- logging


class _Log:
    """`log.info("fetched page", page=3)`: structured lines in weir's execution log."""

    def _emit(self, level: Any, message: str, fields: Dict[str, Any]) -> None:
        _log.log(level, str(message), [(str(k), str(v)) for k, v in fields.items()])

    def trace(self, message: str, **fields: Any) -> None:
        self._emit(_log.Level.TRACE, message, fields)

    def debug(self, message: str, **fields: Any) -> None:
        self._emit(_log.Level.DEBUG, message, fields)

    def info(self, message: str, **fields: Any) -> None:
        self._emit(_log.Level.INFO, message, fields)

    def warn(self, message: str, **fields: Any) -> None:
        self._emit(_log.Level.WARN, message, fields)

    def error(self, message: str, **fields: Any) -> None:
        self._emit(_log.Level.ERROR, message, fields)


log = _Log()


class _LogStream:
    """Stands in for stdout/stderr: the component's own are discarded by the
    host, so without this `print()` would vanish. Whole lines go to the log."""

    def __init__(self, level: Any):
        self.level = level
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line:
                _log.log(self.level, line, [])
        return len(text)

    def flush(self) -> None:
        if self.pending:
            _log.log(self.level, self.pending, [])
            self.pending = ""


sys.stdout = _LogStream(_log.Level.INFO)
sys.stderr = _LogStream(_log.Level.WARN)


# ---------------------------------------------------------------- descriptions


@dataclass
class Option:
    """A configuration option the plugin understands."""

    name: str
    description: str
    required: bool = False
    secret: bool = False
    default: Optional[str] = None

    def to_wit(self) -> Any:
        return _t.ConfigField(self.name, self.description, self.required, self.secret, self.default)


@dataclass
class Field:
    """One field of an entity or a batch; `type` is one of BOOLEAN ... BYTES."""

    name: str
    type: str = TEXT
    required: bool = False
    description: str = ""

    def to_wit(self) -> Any:
        if self.type not in _TYPES:
            raise Internal(f"field `{self.name}`: unknown type `{self.type}`")
        return _t.FieldSchema(self.name, _TYPES[self.type], self.required, self.description)

    @staticmethod
    def of_wit(f: Any) -> "Field":
        return Field(f.name, _NAMES[f.type], f.required, f.description)


@dataclass
class Entity:
    """An entity a connector reads (and/or writes), with its key fields."""

    name: str
    fields: List[Field]
    key: List[str] = field(default_factory=list)
    readable: bool = True
    writable: bool = False

    def to_wit(self) -> Any:
        return _t.EntitySchema(
            self.name, [f.to_wit() for f in self.fields], list(self.key), self.readable, self.writable
        )


@dataclass
class Page:
    """What `Connector.read` returns: rows (dicts), where to continue, whether done.
    `rejected` holds `(position, key or None, RecordFailed)` for unreadable records."""

    rows: List[Dict[str, Any]]
    next_cursor: Optional[str]
    done: bool
    rejected: List[Tuple[str, Optional[str], RecordFailed]] = field(default_factory=list)


class Config(dict):
    """The connection's `key = value` options, with the declared defaults filled in."""

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None or value == "":
            raise InvalidConfig(f"option `{name}` is required")
        return value

    def integer(self, name: str, default: Optional[int] = None) -> int:
        value = self.get(name)
        if value is None:
            if default is None:
                raise InvalidConfig(f"option `{name}` is required")
            return default
        try:
            return int(value)
        except ValueError:
            raise InvalidConfig(f"option `{name}`: `{value}` is not an integer") from None


def _config(options: Sequence[Option], pairs: List[Tuple[str, str]]) -> Config:
    c = Config({o.name: o.default for o in options if o.default is not None})
    c.update(pairs)
    return c


# ---------------------------------------------------------------- batches


def _var(data: bytes, offsets: Sequence[int], i: int) -> bytes:
    return data[offsets[i]:offsets[i + 1]]


def _decode(column: Any, n: int) -> List[Any]:
    """One column as Python values, `None` for null."""
    v = column.values
    if isinstance(v, (_t.ColumnValues_Text, _t.ColumnValues_Decimal)):
        data, offsets = bytes(v.value.data), v.value.offsets
        values: List[Any] = [data[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n)]
    elif isinstance(v, _t.ColumnValues_Bytes):
        data, offsets = bytes(v.value.data), v.value.offsets
        values = [data[offsets[i]:offsets[i + 1]] for i in range(n)]
    else:
        values = list(v.value)
    if column.nulls:
        for i, null in enumerate(column.nulls):
            if null:
                values[i] = None
    return values


def _check(type_: str, value: Any) -> Optional[str]:
    """Why `value` cannot be stored in a `type_` column, or None."""
    if type_ in (INTEGER, TIMESTAMP):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"`{value!r}` is not an integer"
        if not S64_MIN <= value <= S64_MAX:
            return f"{value} does not fit a 64-bit integer"
    elif type_ == FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"`{value!r}` is not a number"
    elif type_ == BOOLEAN:
        if not isinstance(value, bool):
            return f"`{value!r}` is not true or false"
    elif type_ in (TEXT, DECIMAL):
        if not isinstance(value, str):
            return f"`{value!r}` is not text"
    elif type_ == BYTES:
        if not isinstance(value, (bytes, bytearray)):
            return f"`{value!r}` is not bytes"
    return None


_ZERO = {BOOLEAN: False, INTEGER: 0, FLOAT: 0.0, TIMESTAMP: 0}


def _encode(f: Field, values: Sequence[Any], failures: Dict[int, RecordFailed]) -> Any:
    """A column from Python values. A value that does not fit fails its record
    (in `failures`) and is written as null, so the batch stays well formed."""
    nulls = [False] * len(values)
    clean: List[Any] = []
    for i, value in enumerate(values):
        problem = None if value is None else _check(f.type, value)
        if problem is not None and i not in failures:
            failures[i] = RecordFailed(f"column `{f.name}`: {problem}", f.name)
        if value is None or problem is not None:
            nulls[i] = True
            value = _ZERO.get(f.type, b"" if f.type == BYTES else "")
        clean.append(value)
    if f.type in (TEXT, DECIMAL, BYTES):
        data = bytearray()
        offsets = [0]
        for value in clean:
            data += value if f.type == BYTES else value.encode("utf-8")
            offsets.append(len(data))
        var = _t.VarColumn(bytes(data), offsets)
        wit = {TEXT: _t.ColumnValues_Text, DECIMAL: _t.ColumnValues_Decimal, BYTES: _t.ColumnValues_Bytes}[f.type](var)
    elif f.type == FLOAT:
        wit = _t.ColumnValues_Float([float(x) for x in clean])
    else:
        wit = {BOOLEAN: _t.ColumnValues_Boolean, INTEGER: _t.ColumnValues_Integer, TIMESTAMP: _t.ColumnValues_Timestamp}[f.type](clean)
    return _t.Column(f.name, wit, nulls if any(nulls) else [])


def fields_of(batch: Any) -> List[Field]:
    """The fields of a contract batch, in order."""
    return [Field(c.name, _NAMES[_type_of(c.values)]) for c in batch.columns]


def _type_of(values: Any) -> Any:
    for name, cls in (
        (BOOLEAN, _t.ColumnValues_Boolean), (INTEGER, _t.ColumnValues_Integer),
        (FLOAT, _t.ColumnValues_Float), (DECIMAL, _t.ColumnValues_Decimal),
        (TEXT, _t.ColumnValues_Text), (TIMESTAMP, _t.ColumnValues_Timestamp),
        (BYTES, _t.ColumnValues_Bytes),
    ):
        if isinstance(values, cls):
            return _TYPES[name]
    raise Internal(f"unknown column values {type(values).__name__}")


def columns_of(batch: Any) -> Dict[str, List[Any]]:
    """A contract batch as `{name: [values...]}` (the fast path: no dict per row)."""
    return {c.name: _decode(c, batch.len) for c in batch.columns}


def rows_of(batch: Any) -> List[Dict[str, Any]]:
    """A contract batch as a list of dicts, one per record."""
    columns = columns_of(batch)
    names = list(columns)
    return [{k: columns[k][i] for k in names} for i in range(batch.len)]


def batch_of_columns(fields: Sequence[Field], columns: Dict[str, Sequence[Any]], n: int,
                     failures: Optional[Dict[int, RecordFailed]] = None) -> Any:
    """A contract batch of `n` records from `{name: [values...]}`; a missing
    column is all nulls. Values that do not fit their type fail their record."""
    failures = {} if failures is None else failures
    cols = []
    for f in fields:
        values = columns.get(f.name)
        if values is None:
            values = [None] * n
        if len(values) != n:
            raise Internal(f"column `{f.name}` has {len(values)} values for {n} records")
        cols.append(_encode(f, values, failures))
    return _t.RecordBatch(n, cols)


def batch_of_rows(fields: Sequence[Field], rows: Sequence[Optional[Dict[str, Any]]],
                  failures: Optional[Dict[int, RecordFailed]] = None) -> Any:
    """A contract batch from dicts (`None` for a record that failed)."""
    columns = {f.name: [None if r is None else r.get(f.name) for r in rows] for f in fields}
    return batch_of_columns(fields, columns, len(rows), failures)


# ---------------------------------------------------------------- transforms


class Transform:
    """Base of a transform. Override `transform_row` (simple) or
    `transform_columns` (fast); override `output_fields` when the output
    fields differ from the input's."""

    name = "transform"
    version = "0.1.0"
    description = ""
    options: List[Option] = []

    def output_fields(self, config: Config, fields: List[Field]) -> List[Field]:
        return fields

    def transform_row(self, config: Config, row: Dict[str, Any]) -> Dict[str, Any]:
        raise Internal("the transform overrides neither transform_row nor transform_columns")

    def transform_columns(self, config: Config, columns: Dict[str, List[Any]], n: int,
                          failures: Dict[int, RecordFailed]) -> Dict[str, List[Any]]:
        """`{name: values}` in and out; add `failures[i] = RecordFailed(...)` for
        records that cannot be transformed."""
        names = list(columns)
        out: Dict[str, List[Any]] = {}
        for i in range(n):
            row = {k: columns[k][i] for k in names}
            try:
                new = self.transform_row(config, row)
            except RecordFailed as e:
                failures[i] = e
                new = {}
            for k, v in new.items():
                out.setdefault(k, [None] * n)[i] = v
        return out

    # The contract's exports.
    def describe(self) -> Any:
        return _t.PluginInfo(self.name, self.version, self.description,
                             [o.to_wit() for o in self.options], [])

    def output_schema(self, config: List[Tuple[str, str]], input: List[Any]) -> List[Any]:
        def run() -> List[Any]:
            fields = self.output_fields(_config(self.options, config), [Field.of_wit(f) for f in input])
            return [f.to_wit() for f in fields]
        return _call(run)

    def transform(self, config: List[Tuple[str, str]], records: Any) -> Any:
        from wit_world.exports import transform as _x

        def run() -> Any:
            c = _config(self.options, config)
            fields = self.output_fields(c, fields_of(records))
            failures: Dict[int, RecordFailed] = {}
            out = self.transform_columns(c, columns_of(records), records.len, failures)
            batch = batch_of_columns(fields, out, records.len, failures)
            return _x.Transformed(batch, [_x.Failure(i, e.to_wit()) for i, e in sorted(failures.items())])
        return _call(run)


# ---------------------------------------------------------------- connectors


class Connector:
    """Base of a source connector. Override `entities` and `read` (and `check`).
    Destinations implement the contract's `open_writer` themselves for now."""

    name = "connector"
    version = "0.1.0"
    description = ""
    options: List[Option] = []
    #: "http" and/or "files".
    capabilities: List[str] = []

    def check_connection(self, config: Config) -> None:
        """Raise `ConnectionFailed` / `InvalidConfig` when the connection does not work."""

    def organizations(self, config: Config) -> List[Tuple[str, str, str]]:
        """`(id, name, kind)` of the organizations behind the connection."""
        return []

    def entities(self, config: Config) -> List[Entity]:
        raise Internal("the connector does not override entities")

    def read_page(self, config: Config, entity: Entity, cursor: Optional[str], max_records: int) -> Page:
        raise Internal("the connector does not override read_page")

    # The contract's exports.
    def describe(self) -> Any:
        caps = {"http": _t.Capability.HTTP, "files": _t.Capability.FILES}
        return _t.PluginInfo(self.name, self.version, self.description,
                             [o.to_wit() for o in self.options], [caps[c] for c in self.capabilities])

    def check(self, config: List[Tuple[str, str]]) -> None:
        return _call(lambda: self.check_connection(_config(self.options, config)))

    def list_organizations(self, config: List[Tuple[str, str]]) -> List[Any]:
        return _call(lambda: [_t.Organization(*o) for o in self.organizations(_config(self.options, config))])

    def discover(self, config: List[Tuple[str, str]], organization: Optional[str]) -> List[Any]:
        return _call(lambda: [e.to_wit() for e in self.entities(_config(self.options, config))])

    def read(self, config: List[Tuple[str, str]], request: Any) -> Any:
        from wit_world.exports import connector as _x

        def run() -> Any:
            c = _config(self.options, config)
            entity = next((e for e in self.entities(c) if e.name == request.entity), None)
            if entity is None:
                raise InvalidConfig(f"no entity `{request.entity}`")
            page = self.read_page(c, entity, request.cursor, request.max_records)
            if len(page.rows) > request.max_records:
                raise Internal(f"read_page returned {len(page.rows)} rows for at most {request.max_records}")
            failures: Dict[int, RecordFailed] = {}
            batch = batch_of_rows(entity.fields, page.rows, failures)
            rejected = [_x.RejectedRecord(p, k, e.to_wit()) for p, k, e in page.rejected]
            if failures:
                # Rows whose values do not fit their field: rejected, not sent.
                keep = [i not in failures for i in range(len(page.rows))]
                for i, e in sorted(failures.items()):
                    key = ",".join(str(page.rows[i].get(k)) for k in entity.key) or None
                    rejected.append(_x.RejectedRecord(f"record {i} of the page", key, e.to_wit()))
                batch = batch_of_rows(entity.fields, [r for r, k in zip(page.rows, keep) if k])
            return _x.ReadPage(batch, rejected, page.next_cursor, page.done)
        return _call(run)

    def open_writer(self, config: List[Tuple[str, str]], request: Any) -> Any:
        return _call(lambda: (_ for _ in ()).throw(InvalidConfig(f"{self.name} is not a destination")))


def http_get(url: str, headers: Iterable[Tuple[str, str]] = ()) -> Tuple[int, bytes]:
    """GET through weir's `http` import (the connection must grant the host).
    Returns `(status, body)`; transport failures raise `ConnectionFailed`."""
    from wit_world.imports import http as _h

    try:
        r = _h.send(_h.Request("GET", url, list(headers), b""))
    except Err as e:
        v = e.value
        transient = isinstance(v, (_h.HttpError_Timeout, _h.HttpError_Transport))
        detail = getattr(v, "value", "timeout")
        if isinstance(v, _h.HttpError_Denied):
            raise InvalidConfig(f"GET {url}: not granted to this connection ({detail})") from None
        raise ConnectionFailed(f"GET {url}: {type(v).__name__.split('_')[-1]} {detail}", transient) from None
    if r.status == 429 or r.status >= 500:
        raise ConnectionFailed(f"GET {url}: HTTP {r.status}", True)
    return r.status, bytes(r.body)
