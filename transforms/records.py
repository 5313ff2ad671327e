"""Reading input records: JSON Lines (plain or compressed), CSV and Parquet.

Pure parsing first: iter_file_records() turns a binary stream into a sequence of
(position, object) or (position, DeadLetter) items, and to_record() maps an object to
the pipeline's record {"id", "text", kept fields...} or to a DeadLetter with the reason.
Nothing is dropped silently: every record that is read ends as a record or a dead letter.
"""
from __future__ import annotations

import csv
import hashlib
import json
import zlib
from dataclasses import asdict, dataclass
from typing import IO, Any, Iterator, Mapping, Sequence

import pyarrow as pa

COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".deflate", ".lzma", ".xz")
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")


@dataclass(frozen=True)
class FieldMap:
    id_field: str = "id"
    text_field: str = "text"
    keep_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeadLetter:
    source: str
    position: int | None  # line (JSON Lines), data row (CSV, Parquet), None for the whole file
    reason: str
    raw: str | None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def input_format(path: str) -> str:
    """'jsonl', 'csv' or 'parquet' from a file name (compression suffixes ignored)."""
    name = path.lower()
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith(JSON_SUFFIXES):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    raise ValueError(f"{path}: unknown input format (expected .jsonl/.json/.ndjson, .csv or .parquet, "
                     f"optionally compressed)")


def text_id(text: str) -> str:
    """The stable id of a record that has none: a hash of its text."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _describe(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _decode_error_raw(line: bytes) -> str:
    return line.rstrip(b"\r\n").decode("utf-8", "backslashreplace")


def iter_jsonl(source: str, stream: IO[bytes]) -> Iterator[tuple[int, Any, str] | DeadLetter]:
    """Yield (line number, parsed value, raw line) for each non-blank line, or a DeadLetter."""
    for number, line in enumerate(_lines(stream), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield DeadLetter(source, number, f"invalid UTF-8: {exc.reason} at byte {exc.start}",
                             _decode_error_raw(line))
            continue
        if number == 1:
            text = text.lstrip("\ufeff")
        if not text.strip():
            continue
        try:
            yield number, json.loads(text), text.rstrip("\r\n")
        except ValueError as exc:
            yield DeadLetter(source, number, f"invalid JSON: {exc}", text.rstrip("\r\n"))


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Lines of a binary stream (Beam's CompressedFile is not iterable, but has readline)."""
    return iter(stream.readline, b"")


def _csv_text_lines(stream: IO[bytes]) -> Iterator[str]:
    for number, line in enumerate(_lines(stream)):
        text = line.decode("utf-8", "surrogateescape")
        yield text.lstrip("\ufeff") if number == 0 else text


def iter_csv(source: str, stream: IO[bytes]) -> Iterator[tuple[int, Any, str] | DeadLetter]:
    reader = csv.DictReader(_csv_text_lines(stream))
    for number, row in enumerate(reader, start=1):
        row.pop(None, None)  # surplus cells beyond the header
        raw = json.dumps(row, ensure_ascii=False, default=str)
        bad = [k for k, v in row.items() if isinstance(v, str) and _has_surrogates(v)]
        if bad:
            yield DeadLetter(source, number, f"invalid UTF-8 in column(s) {bad}",
                             raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))
            continue
        yield number, row, raw


def _has_surrogates(value: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in value)


def iter_parquet(source: str, stream: IO[bytes]) -> Iterator[tuple[int, Any, str] | DeadLetter]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(stream).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            yield number, row, json.dumps(row, ensure_ascii=False, default=str)


READERS = {"jsonl": iter_jsonl, "csv": iter_csv, "parquet": iter_parquet}


def iter_file_records(source: str, stream: IO[bytes]) -> Iterator[tuple[int, Any, str] | DeadLetter]:
    """All items of one file. A file that breaks off (truncated gzip, corrupt Parquet) ends with a
    DeadLetter naming the file and how far it was read; what was read before stays."""
    last = 0
    try:
        for item in READERS[input_format(source)](source, stream):
            if not isinstance(item, DeadLetter):
                last = item[0]
            yield item
    except (EOFError, OSError, zlib.error, pa.ArrowException, csv.Error, UnicodeDecodeError) as exc:
        yield DeadLetter(source, None, f"file unreadable after record {last}: {type(exc).__name__}: {exc}", None)


def to_record(value: Any, fields: FieldMap, kept_types: Mapping[str, pa.DataType],
              source: str, position: int, raw: str) -> dict | DeadLetter:
    """A parsed input value -> the pipeline's record, or a DeadLetter saying why not."""
    if not isinstance(value, dict):
        return DeadLetter(source, position, f"record is a JSON {_describe(value)}, not an object", raw)
    if fields.text_field not in value:
        return DeadLetter(source, position, f"no {fields.text_field!r} field", raw)
    text = value[fields.text_field]
    if not isinstance(text, str):
        return DeadLetter(source, position, f"{fields.text_field!r} is {_describe(text)}, not a string", raw)
    record_id = value.get(fields.id_field)
    if record_id is None or record_id == "":
        record_id = text_id(text)
    elif not isinstance(record_id, str):
        record_id = json.dumps(record_id, ensure_ascii=False, default=str)
    record = {"id": record_id, "text": text}
    for name in fields.keep_fields:
        kept = value.get(name)
        column_type = kept_types.get(name, pa.string())
        try:
            pa.scalar(kept, type=column_type)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            return DeadLetter(source, position, f"kept field {name!r} holds a {_describe(kept)}, "
                                                f"which does not fit its column type {column_type}", raw)
        record[name] = kept
    return record


def infer_kept_types(sample: Sequence[Any], keep_fields: Sequence[str]) -> dict[str, pa.DataType]:
    """Column types for kept fields, inferred from sample records as pyarrow would."""
    types = {}
    for name in keep_fields:
        values = [row.get(name) for row in sample if isinstance(row, dict)]
        try:
            inferred = pa.array(values).type
        except (pa.ArrowException, TypeError, ValueError):
            inferred = pa.string()
        types[name] = pa.string() if pa.types.is_null(inferred) else inferred
    return types
