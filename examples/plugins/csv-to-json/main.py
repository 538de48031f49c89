"""CSV to JSON records, with typed columns. Uses Warden's Python SDK for a
typed event and structured errors (``warden plugin pack`` adds the SDK to
the package)."""

import csv
import dataclasses
import io
import typing

from warden_sdk import PluginError, typed

CONVERTERS = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": lambda s: {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[s.strip().lower()],
}


@dataclasses.dataclass
class Event:
    csv: str
    delimiter: str = ","
    types: typing.Dict[str, str] = dataclasses.field(default_factory=dict)
    strict: bool = False


@typed(Event)
def handler(event: Event):
    reader = csv.reader(io.StringIO(event.csv), delimiter=event.delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise PluginError("EmptyInput", "the CSV has no header row")
    columns = [c.strip() for c in header]
    if len(set(columns)) != len(columns):
        raise PluginError("BadHeader", "the header row repeats a column name")
    unknown = sorted(set(event.types) - set(columns))
    if unknown:
        raise PluginError("UnknownColumn", f"types names columns that are not in the header: {', '.join(unknown)}")
    records, errors = [], []
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(columns):
            problem = {"line": line, "message": f"{len(row)} fields, the header has {len(columns)}"}
            if event.strict:
                raise PluginError("BadRow", f"line {line}: {problem['message']}")
            errors.append(problem)
            continue
        record, bad = {}, None
        for name, cell in zip(columns, row):
            kind = event.types.get(name, "string")
            try:
                record[name] = CONVERTERS[kind](cell) if cell != "" or kind == "string" else None
            except (ValueError, KeyError):
                bad = {"line": line, "column": name, "message": f"{cell!r} is not a {kind}"}
                break
        if bad:
            if event.strict:
                raise PluginError("BadValue", f"line {line}, column {bad['column']}: {bad['message']}")
            errors.append(bad)
            continue
        records.append(record)
    return {"columns": columns, "records": records, "row_count": len(records), "errors": errors}
