"""Reading input records: JSON Lines (plain or compressed), CSV and Parquet.

Pure parsing first: iter_file_records() turns a binary stream into a sequence of
(position, object) or (position, DeadLetter) items, and to_record() maps an object to
the pipeline's record {"id", "text", kept fields...} or to a DeadLetter with the reason.
Nothing is dropped silently: every record that is read ends as a record or a dead letter.

Safe at the boundary (the repair rules):
- A lone surrogate (U+D800..U+DFFF, which JSON's \\ud800 escapes let through but UTF-8 cannot
  encode) in any string of a record, key or value, at any depth, is replaced by U+FFFD, the
  replacement character, as a UTF-8 decoder does with bytes it cannot read; the record is kept.
- Bytes that are not UTF-8 are not repaired: the line (JSON Lines) or row (CSV) is dead-lettered
  with "invalid UTF-8" and the bytes kept, backslash-escaped, in `raw`.
- Line and paragraph separators (U+2028, U+2029, U+0085), NUL and other control characters are
  kept as they are in `id`, `text` and kept fields (Parquet holds any string); dead letters are
  framed by encode_dead_letter, which escapes them, so no content can break a dead-letter line.
- CSV: a row with more cells than the header, or a record the csv module cannot parse (a quote
  that is never closed, text after a closing quote), is dead-lettered; reading resumes on the line
  after the one where that record began, so an unclosed quote swallows nothing after its line.
  (CSV is ambiguous when a later line has a quote of its own: the open quote then pairs with it,
  and what lies between is read as one cell, as any CSV reader would.)
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
import zlib
from collections import deque
from dataclasses import asdict, dataclass
from typing import IO, Any, Iterator, Mapping, Sequence

import pyarrow as pa

# The one rule, for labeling (--input) and training (--train, --eval), of what a file's name says it
# holds: its format, then optionally a compression (the names are Beam's CompressionTypes values).
FORMAT_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
                   ".parquet": "parquet", ".pq": "parquet"}
COMPRESSION_SUFFIXES = {".gz": "gzip", ".bz2": "bzip2", ".zst": "zstd", ".deflate": "deflate",
                        ".lzma": "lzma", ".xz": "lzma"}
ACCEPTED_SUFFIXES = (f"{', '.join(s for s, f in FORMAT_SUFFIXES.items() if f != 'parquet')} (each optionally "
                     f"compressed: {', '.join(COMPRESSION_SUFFIXES)}), or "
                     f"{', '.join(s for s, f in FORMAT_SUFFIXES.items() if f == 'parquet')} (not compressed)")


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
        return encode_dead_letter(self)


CLASSIFIER_SOURCE_PREFIX = "classifier:"  # the source of a dead letter a classifier could not run


def classifier_source(name: str) -> str:
    return f"{CLASSIFIER_SOURCE_PREFIX}{name}"


def is_classifier_source(source) -> bool:
    return str(source or "").startswith(CLASSIFIER_SOURCE_PREFIX)


# Characters that json.dumps(ensure_ascii=False) leaves raw but that break a line-based file
# (str.splitlines() splits on U+0085, U+2028 and U+2029) or cannot be encoded as UTF-8 (lone
# surrogates). JSON lets any of them be written as a \\uXXXX escape, which decodes back exactly.
_UNSAFE_IN_LINE_RE = re.compile("[\u0085\u2028\u2029\ud800-\udfff]")
_LONE_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def encode_dead_letter(letter: DeadLetter) -> str:
    """One dead letter as one line of JSON: ASCII-safe where it matters, no raw line breaks of
    any kind, encodable as UTF-8 whatever its content. decode_dead_letter reads it back."""
    text = json.dumps(asdict(letter), ensure_ascii=False)
    return _UNSAFE_IN_LINE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def decode_dead_letter(line: str) -> dict:
    """A line written by encode_dead_letter -> its fields (source, position, reason, raw)."""
    return json.loads(line)


def split_dead_letter_lines(content: str) -> list[str]:
    """The non-blank lines of a dead-letter file: split on "\\n" only (never str.splitlines)."""
    return [line for line in content.split("\n") if line.strip()]


def repair_strings(value: Any) -> Any:
    """The value with every lone surrogate in its strings (keys too, at any depth) -> U+FFFD."""
    if isinstance(value, str):
        return _LONE_SURROGATE_RE.sub("\ufffd", value) if _LONE_SURROGATE_RE.search(value) else value
    if isinstance(value, dict):
        return {repair_strings(k): repair_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [repair_strings(v) for v in value]
    return value


def file_format(path: str) -> tuple[str, str | None]:
    """(format, compression) that a file's name says: format 'jsonl', 'csv' or 'parquet';
    compression None or a COMPRESSION_SUFFIXES value. Raises ValueError, naming the accepted
    suffixes, for any other name. A compressed Parquet file is refused: Parquet compresses its own
    pages, and its reader needs to seek, which a compressed stream cannot do."""
    name, compression = path.lower(), None
    for suffix, kind in COMPRESSION_SUFFIXES.items():
        if name.endswith(suffix):
            name, compression = name[: -len(suffix)], kind
            break
    for suffix, fmt in FORMAT_SUFFIXES.items():
        if name.endswith(suffix):
            if fmt == "parquet" and compression:
                raise ValueError(f"{path}: a compressed Parquet file is not read (Parquet compresses its own "
                                 f"pages; decompress it); accepted: {ACCEPTED_SUFFIXES}")
            return fmt, compression
    raise ValueError(f"{path}: unknown input format; accepted: {ACCEPTED_SUFFIXES}")


def input_format(path: str) -> str:
    """'jsonl', 'csv' or 'parquet': file_format's format."""
    return file_format(path)[0]


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
        except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than Python parses
            yield DeadLetter(source, number, f"invalid JSON: {type(exc).__name__}: {exc}", text.rstrip("\r\n"))


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Lines of a binary stream (Beam's CompressedFile is not iterable, but has readline)."""
    return iter(stream.readline, b"")


def _csv_text_lines(stream: IO[bytes]) -> Iterator[str]:
    for number, line in enumerate(_lines(stream)):
        text = line.decode("utf-8", "surrogateescape")
        yield text.lstrip("\ufeff") if number == 0 else text


class _LineTape:
    """An iterator of lines that remembers those handed out since the last take(), so the lines
    of a record the csv module could not parse can be read again."""

    def __init__(self, lines: Iterator[str]):
        self.lines = lines
        self.replay: deque[str] = deque()
        self.taken: list[str] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self.replay.popleft() if self.replay else next(self.lines)
        self.taken.append(line)
        return line

    def take(self) -> list[str]:
        taken, self.taken = self.taken, []
        return taken


def _csv_rows(lines: Iterator[str]) -> Iterator[list[str] | tuple[str, str]]:
    """Rows of cells, or (error, first line) for a record the csv module cannot parse (strict
    mode); reading then resumes on the line after that record's first line."""
    tape = _LineTape(lines)
    while True:
        reader = csv.reader(tape, strict=True)
        try:
            for row in reader:
                tape.take()
                yield row
            return
        except csv.Error as exc:
            taken = tape.take()
            yield f"{exc}", taken[0] if taken else ""
            tape.replay.extendleft(reversed(taken[1:]))


def _row_dict(header: list[str], cells: list[str]) -> dict:
    return {name: (cells[i] if i < len(cells) else None) for i, name in enumerate(header)}


def _raw(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def iter_csv(source: str, stream: IO[bytes]) -> Iterator[tuple[int, Any, str] | DeadLetter]:
    rows = _csv_rows(_csv_text_lines(stream))
    header = None
    number = 0
    for row in rows:
        if header is None:
            if isinstance(row, tuple):  # an unreadable header: nothing after it can be mapped
                yield DeadLetter(source, None, f"CSV header unreadable: {row[0]}", _raw(row[1].rstrip("\r\n")))
                return
            header = row
            continue
        if not isinstance(row, tuple) and not row:
            continue  # a blank line
        number += 1
        if isinstance(row, tuple):
            yield DeadLetter(source, number, f"CSV record unreadable: {row[0]} (reading resumes on the next line)",
                             _raw(row[1].rstrip("\r\n")))
            continue
        record = _row_dict(header, row)
        if len(row) > len(header):
            yield DeadLetter(source, number, f"CSV row has {len(row)} cells but the header has {len(header)}",
                             _raw(row))
            continue
        bad = [k for k, v in record.items() if isinstance(v, str) and _has_surrogates(v)]
        if bad:
            yield DeadLetter(source, number, f"invalid UTF-8 in column(s) {bad}", _raw(record))
            continue
        yield number, record, _raw(record)


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
    value = repair_strings(value)
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


def columns_of(sample: Sequence[Any]) -> list[str]:
    """The fields of sample records (objects only), in the order first seen: a file's columns."""
    return list(dict.fromkeys(name for row in sample if isinstance(row, dict) for name in row))


def likely_text_field(sample: Sequence[Any], exclude: Sequence[str] = ()) -> str | None:
    """The field whose sampled values are the longest strings on average (a post's text is usually
    its longest field), other than `exclude`; None when no field holds a string."""
    lengths: dict[str, list[int]] = {}
    for row in sample:
        for name, value in (row.items() if isinstance(row, dict) else ()):
            if name not in exclude and isinstance(value, str) and value.strip():
                lengths.setdefault(name, []).append(len(value))
    return max(lengths, key=lambda name: sum(lengths[name]) / len(lengths[name]), default=None)


def safe_to_record(item: tuple, fields: FieldMap, kept_types: Mapping[str, pa.DataType], path: str):
    """to_record, with anything it did not foresee (a value nested too deep to walk, ...) turned
    into a dead letter for that record instead of a failed bundle."""
    position, value, raw = item
    try:
        return to_record(value, fields, kept_types, path, position, raw)
    except Exception as exc:  # noqa: BLE001 - one bad value must never take the job down
        return DeadLetter(path, position, f"record unusable: {type(exc).__name__}: {exc}"[:500], raw)


def is_record_letter(line: str) -> bool:
    """A reader's dead letter for a record (it has a position), not for a file that broke off."""
    return decode_dead_letter(line).get("position") is not None
