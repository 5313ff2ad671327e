"""Thin Beam wrappers around the pure functions: read, clean, label, write, dead-letter."""
from __future__ import annotations

import gzip
import json
import logging
import time
from typing import Mapping, Sequence

import apache_beam as beam
import pyarrow as pa
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from models.handler import InferenceFailure
from transforms.cleaning import CleaningOptions, clean_text
from transforms.language import post_language, runs_on
from transforms.records import DeadLetter, FieldMap, input_format, iter_file_records, to_record

LOG = logging.getLogger(__name__)
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


class ReadRecordsFn(beam.DoFn):
    """ReadableFile -> records (main output) and DeadLetter JSON lines (tagged DEAD_LETTERS)."""

    def __init__(self, fields: FieldMap, kept_types: Mapping[str, pa.DataType], lang_field: str | None = None):
        self.fields = fields
        self.lang_field = lang_field
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
                    value = item[1]
                    item = to_record(value, self.fields, self.kept_types, path, item[0], item[2])
                    if self.lang_field and isinstance(item, dict):
                        item["lang"] = value.get(self.lang_field)  # as given; AddLanguageFn normalizes it
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


def add_clean_text(record: dict, options: CleaningOptions) -> dict:
    record["clean_text"] = clean_text(record["text"], options)
    return record


LANGUAGES_NAMESPACE = "label_corpus_languages"  # one counter per `lang` value


class AddLanguageFn(beam.DoFn):
    """Sets the row's `lang` (the input's value when usable, else detected) and counts it."""

    def process(self, record: dict):
        record["lang"] = post_language(record["text"], record.get("lang"))
        beam.metrics.Metrics.counter(LANGUAGES_NAMESPACE, record["lang"]).inc()
        yield record


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


def model_text(row: dict, languages: frozenset[str] | None) -> str | None:
    """What the classifier's model sees for a row: its cleaned text, or None (null columns, no
    model time) when the text is empty or the row's language is outside `languages`."""
    return (row["clean_text"] or None) if runs_on(row["lang"], languages) else None


class Classify(beam.PTransform):
    """Adds one classifier's columns to each row, through RunInference with our handler.
    The row rides along as the key; the model sees model_text(): rows outside the classifier's
    languages (None: every language) reach the handler as None, which returns the null columns
    without running the model. (Routing them around RunInference through a Partition and a
    Flatten would cut the DirectRunner's fused stage there, and progress would only show at the end.)
    Returns the labeled rows (main output) and the dead letters of texts that failed (DEAD_LETTERS)."""

    def __init__(self, handler, null_columns: dict, languages: frozenset[str] | None = None):
        super().__init__()
        self.handler = handler
        self.null_columns = null_columns
        self.languages = languages

    def expand(self, rows):
        return (
            rows
            | "KeyByRow" >> beam.Map(lambda row, languages: (row, model_text(row, languages)), self.languages)
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


def progress_line(done: int, seconds: float, expected: int | None, workers: int = 1, verb: str = "labeled") -> str:
    """'12,000 posts labeled in 60 s (200.0 posts/s), about 40 s left of ~20,000': one worker's view;
    the estimate assumes `workers` processes going at its pace."""
    rate = done / max(seconds, 1e-9)
    line = f"{done:,} posts {verb} in {seconds:.0f} s ({rate:,.1f} posts/s)"
    if workers > 1:
        line = f"this worker: {line}"
    if expected and rate > 0:
        left = max(expected - done * workers, 0) / (rate * workers)
        line += f", about {left:.0f} s left of ~{expected:,}"
    return line


class ProgressFn(beam.DoFn):
    """Passes rows through; every `every` seconds logs how many this worker process has `verb`
    (read, labeled). It runs where the work runs (the launcher blocks in pipeline.run() on the
    DirectRunner, and workers may be other processes), so the count is per process, shared by the
    DoFn instances with the same verb."""
    _state: dict[str, list] = {}  # verb -> [done, started, last logged]

    def __init__(self, expected: int | None = None, workers: int = 1, every: float = 10.0, verb: str = "labeled"):
        self.expected, self.workers, self.every, self.verb = expected, workers, every, verb

    def process(self, row):
        now = time.monotonic()
        state = self._state.setdefault(self.verb, [0, now, now])
        state[0] += 1
        if now - state[2] >= self.every:
            state[2] = now
            LOG.info("%s", progress_line(state[0], now - state[1], self.expected, self.workers, self.verb))
        yield row
