"""Thin Beam wrappers around the pure functions: read, clean, label, write, dead-letter."""
from __future__ import annotations

import gzip
import json
from typing import Mapping, Sequence

import apache_beam as beam
import pyarrow as pa
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from models.handler import InferenceFailure
from transforms.cleaning import CleaningOptions, clean_for_models
from transforms.records import DeadLetter, FieldMap, input_format, iter_file_records, to_record

METRICS_NAMESPACE = "label_corpus"
DEAD_LETTERS = "dead_letters"


def open_input(readable: fileio.ReadableFile):
    """A binary stream of the file's content. Gzip goes through Python's gzip module, which
    raises on a truncated file (Beam's decompressor stops quietly at the cut)."""
    path = readable.metadata.path
    if path.lower().endswith(".gz"):
        return gzip.GzipFile(fileobj=readable.open(compression_type=CompressionTypes.UNCOMPRESSED), mode="rb")
    if input_format(path) == "parquet":
        return readable.open(compression_type=CompressionTypes.UNCOMPRESSED)
    return readable.open(compression_type=CompressionTypes.AUTO)


def safe_to_record(item: tuple, fields: FieldMap, kept_types: Mapping[str, pa.DataType], path: str):
    """to_record, with anything it did not foresee (a value nested too deep to walk, ...) turned
    into a dead letter for that record instead of a failed bundle."""
    position, value, raw = item
    try:
        return to_record(value, fields, kept_types, path, position, raw)
    except Exception as exc:  # noqa: BLE001 - one bad value must never take the job down
        return DeadLetter(path, position, f"record unusable: {type(exc).__name__}: {exc}"[:500], raw)


class ReadRecordsFn(beam.DoFn):
    """ReadableFile -> records (main output) and DeadLetter JSON lines (tagged DEAD_LETTERS)."""

    def __init__(self, fields: FieldMap, kept_types: Mapping[str, pa.DataType]):
        self.fields = fields
        self.kept_types = dict(kept_types)
        self.read = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "records_read")
        self.dead = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "dead_lettered")
        self.files = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "files_read")
        self.broken_files = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "files_broken_off")

    def process(self, readable: fileio.ReadableFile):
        path = readable.metadata.path
        self.files.inc()
        with open_input(readable) as stream:
            for item in iter_file_records(path, stream):
                if not isinstance(item, DeadLetter):
                    item = safe_to_record(item, self.fields, self.kept_types, path)
                if isinstance(item, DeadLetter):
                    if item.position is None:  # the file broke off: named in the dead letters,
                        self.broken_files.inc()  # but not a record, so not in the record counts
                    else:
                        self.read.inc()
                        self.dead.inc()
                    yield beam.pvalue.TaggedOutput(DEAD_LETTERS, item.to_json())
                else:
                    self.read.inc()
                    yield item


def add_clean_text(record: dict, options: CleaningOptions, max_tokens: int) -> dict:
    """The record with clean_text: what models reading at most max_tokens tokens see."""
    record["clean_text"] = clean_for_models(record["text"], max_tokens, options)
    return record


class MergeColumnsFn(beam.DoFn):
    """(row, PredictionResult) -> the row with the classifier's columns; a text the classifier
    could not run (InferenceFailure) sends its record to the dead letters instead."""

    def __init__(self, classifier: str, null_columns: dict):
        self.classifier = classifier
        self.null_columns = null_columns
        self.dead = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "dead_lettered")

    def process(self, keyed):
        row, prediction = keyed
        inference = prediction.inference
        if isinstance(inference, InferenceFailure):
            self.dead.inc()
            raw = json.dumps({"id": row["id"], "text": row["text"]}, ensure_ascii=False)
            letter = DeadLetter(f"classifier:{self.classifier}", None, inference.reason, raw)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter.to_json())
            return
        yield {**row, **(inference or self.null_columns)}


class Classify(beam.PTransform):
    """Adds one classifier's columns to each row, through RunInference with our handler.
    The row rides along as the key; the cleaned text is what the model sees. Returns the
    labeled rows (main output) and the dead letters of texts that failed (DEAD_LETTERS)."""

    def __init__(self, handler, null_columns: dict):
        super().__init__()
        self.handler = handler
        self.null_columns = null_columns

    def expand(self, rows):
        return (
            rows
            | "KeyByRow" >> beam.Map(lambda row: (row, row["clean_text"] or None))
            | "RunInference" >> RunInference(KeyedModelHandler(self.handler))
            | "MergeColumns" >> beam.ParDo(MergeColumnsFn(self.handler.spec.name, self.null_columns))
            .with_outputs(DEAD_LETTERS, main="rows")
        )


def shape_row(row: dict, column_names: Sequence[str]) -> dict:
    """Exactly the output columns, in schema order."""
    return {name: row.get(name) for name in column_names}


class CountRows(beam.DoFn):
    def __init__(self):
        self.rows = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "rows_written")
        self.empty = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "empty_text_rows")

    def process(self, row):
        self.rows.inc()
        if not row.get("clean_text"):
            self.empty.inc()
        yield row
