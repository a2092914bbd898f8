"""A weir transform written in Python: title-cases one text field.

Build (see README.md): componentize-py -d ../../wit/since_v0.1.0 -w transform-plugin componentize app -o titlecase.wasm

Records arrive as a columnar batch: each text column is one byte buffer plus
offsets (value i is data[offsets[i]:offsets[i+1]]), so this code reads and
writes whole columns.
"""
from typing import List, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import transform as t
from wit_world.imports import types


class Transform(exports.Transform):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="titlecase",
            version="0.1.0",
            description="Title-cases a text field (Python example).",
            config=[types.ConfigField("field", "The field to title-case.", False, False, "name")],
            capabilities=[],
        )

    def output_schema(self, config: List[Tuple[str, str]], input: List[types.FieldSchema]) -> List[types.FieldSchema]:
        field = dict(config).get("field", "name")
        if not any(f.name == field for f in input):
            raise Err(types.Error_InvalidConfig(f"no input field `{field}`"))
        return input

    def transform(self, config: List[Tuple[str, str]], records: types.RecordBatch) -> t.Transformed:
        field = dict(config).get("field", "name")
        failures = []
        for column in records.columns:
            if column.name != field or not isinstance(column.values, types.ColumnValues_Text):
                continue
            var = column.values.value
            data = bytearray()
            offsets = [0]
            for i in range(records.len):
                text = bytes(var.data[var.offsets[i]:var.offsets[i + 1]]).decode("utf-8")
                is_null = bool(column.nulls) and column.nulls[i]
                if not is_null and not text.strip():
                    failures.append(t.Failure(i, types.RecordError("the field is empty", field)))
                data += text.title().encode("utf-8")
                offsets.append(len(data))
            column.values = types.ColumnValues_Text(types.VarColumn(bytes(data), offsets))
        return t.Transformed(records, failures)
