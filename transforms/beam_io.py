"""Thin Beam wrappers around the pure functions: read, clean, label, write, dead-letter."""
from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Iterable, Mapping, Sequence

import apache_beam as beam
import pyarrow as pa

from transforms import contract
from transforms.cleaning import CleaningOptions, clean_for_models
from transforms.language import UNDETERMINED, post_language, post_languages
from transforms.inputs import InputFile, InputProblem, open_listed
from transforms.records import (DeadLetter, FieldMap, decode_dead_letter, iter_file_records,
                                to_record)

LOG = logging.getLogger(__name__)
METRICS_NAMESPACE = contract.METRICS_NAMESPACE
DEAD_LETTERS = "dead_letters"
COUNTS = "counts"  # (key, number) pairs the commit step sums: records_read, inferences_<name>, ...


def safe_to_record(item: tuple, fields: FieldMap, kept_types: Mapping[str, pa.DataType], path: str):
    """to_record, with anything it did not foresee (a value nested too deep to walk, ...) turned
    into a dead letter for that record instead of a failed bundle."""
    position, value, raw = item
    try:
        return to_record(value, fields, kept_types, path, position, raw)
    except Exception as exc:  # noqa: BLE001 - one bad value must never take the job down
        return DeadLetter(path, position, f"record unusable: {type(exc).__name__}: {exc}"[:500], raw)


class ReadRecordsFn(beam.DoFn):
    """A file listed at launch (transforms.inputs.InputFile) -> records (main output) and DeadLetter
    JSON lines (tagged DEAD_LETTERS): one for the whole file when it cannot be read as listed."""

    def __init__(self, fields: FieldMap, kept_types: Mapping[str, pa.DataType], lang_field: str | None = None):
        self.fields = fields
        self.lang_field = lang_field
        self.kept_types = dict(kept_types)
        self.read = beam.metrics.Metrics.counter(METRICS_NAMESPACE, contract.RECORDS_READ)
        self.dead = beam.metrics.Metrics.counter(METRICS_NAMESPACE, contract.DEAD_LETTERED)
        self.files = beam.metrics.Metrics.counter(METRICS_NAMESPACE, contract.FILES_READ)
        self.broken_files = beam.metrics.Metrics.counter(METRICS_NAMESPACE, contract.FILES_BROKEN_OFF)

    def process(self, listed: InputFile):
        path = listed.path
        self.files.inc()
        try:
            stream = open_listed(listed)
        except InputProblem as exc:
            self.broken_files.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, DeadLetter(path, None, f"input file not read: {exc}",
                                                                    None).to_json())
            return
        with stream:
            for item in iter_file_records(path, stream):
                if not isinstance(item, DeadLetter):
                    value = item[1]
                    item = safe_to_record(item, self.fields, self.kept_types, path)
                    if self.lang_field and isinstance(item, dict) and isinstance(value, dict):
                        item[contract.LANG] = value.get(self.lang_field)  # as given; AddLanguageFn normalizes it
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


def prepare_row(record: dict, options: CleaningOptions, max_tokens: int) -> dict:
    """The record as the classifiers get it: with clean_text (what models reading at most
    max_tokens tokens see). Its `lang` (the input's value, if any) becomes the post's language in
    the inference step, for a whole batch at once (add_languages)."""
    record[contract.CLEAN_TEXT] = clean_for_models(record[contract.TEXT], max_tokens, options)
    return record


def add_languages(rows: Sequence[dict]) -> None:
    """Each row's `lang`: the input's value when usable, else detected, for the rows together
    (transforms.language.post_languages: several times cheaper a post than one by one). Should the
    batch call ever fail, each row is detected alone, and a row whose detection fails is `und`
    (it then runs every classifier): one odd text never costs the batch its labels."""
    texts, given = [row.get("text") for row in rows], [row.get("lang") for row in rows]
    try:
        langs = post_languages(texts, given)
    except Exception:  # noqa: BLE001 - isolate the text that breaks detection
        langs = [_language_alone(text, value) for text, value in zip(texts, given)]
    for row, lang in zip(rows, langs):
        row["lang"] = lang


def _language_alone(text, given) -> str:
    try:
        return post_language(text, given)
    except Exception:  # noqa: BLE001
        LOG.warning("language detection failed on a post; its lang is %r", UNDETERMINED, exc_info=True)
        return UNDETERMINED


class PrepareFn(beam.DoFn):
    """Records -> rows (prepare_row), with the read progress: one step per post before inference."""

    def __init__(self, options: CleaningOptions, max_tokens: int, progress: "ProgressFn"):
        self.options, self.max_tokens, self.progress = options, max_tokens, progress

    def process(self, record: dict):
        self.progress.tick(1)
        yield prepare_row(record, self.options, self.max_tokens)


LANGUAGE_COUNT_PREFIX = contract.LANGUAGE_COUNT_PREFIX


def language_counts(rows: Iterable[dict]) -> list[tuple[str, int]]:
    """(lang:<code>, posts) pairs for the in-pipeline counts."""
    return [(contract.language_key(lang), n) for lang, n in Counter(row[contract.LANG] for row in rows).items()]


def rows_to_table(rows: Sequence[dict], schema: pa.Schema) -> pa.Table:
    """A batch of rows as an Arrow table of exactly the output columns (absent ones null)."""
    return pa.Table.from_pylist(rows, schema=schema)


class ToTableFn(beam.DoFn):
    """A list of labeled rows -> one Arrow table for WriteToParquetBatched (main output), and the
    batch's empty-text rows as an in-pipeline count (COUNTS)."""

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self.rows = beam.metrics.Metrics.counter(METRICS_NAMESPACE, contract.ROWS_WRITTEN)
        self.empty = beam.metrics.Metrics.counter(METRICS_NAMESPACE, contract.EMPTY_TEXT_ROWS)

    def process(self, rows: list[dict]):
        empty = sum(1 for row in rows if not row.get(contract.CLEAN_TEXT))
        self.rows.inc(len(rows))
        self.empty.inc(empty)
        yield beam.pvalue.TaggedOutput(COUNTS, (contract.EMPTY_TEXT_ROWS, empty))
        yield rows_to_table(rows, self.schema)


def is_record_letter(line: str) -> bool:
    """A reader's dead letter for a record (it has a position), not for a file that broke off."""
    return decode_dead_letter(line).get("position") is not None


class CountAs(beam.PTransform):
    """pcoll -> one (key, number of elements) pair, 0 for an empty pcoll: counts taken inside
    the pipeline, which the commit step can read even when no launcher waits for the job."""

    def __init__(self, key: str):
        super().__init__()
        self.key = key

    def expand(self, pcoll):
        key = self.key
        return pcoll | beam.combiners.Count.Globally() | beam.Map(lambda n: (key, n))


class CommitPartitionFn(beam.DoFn):
    """The pipeline's last step, on a worker, once every Parquet shard and dead-letter file is
    finalized (they arrive as side inputs): transforms.commit_step.commit_partition checks and
    commits the partition."""

    def __init__(self, staging: str, directory: str, base_manifest: dict, base_run, routes=None,
                 outcome_limits: dict | None = None, previous: dict | None = None):
        self.routes = routes
        self.previous = previous  # the committed manifest this run carries columns from, if any
        self.outcome_limits = outcome_limits or {}
        self.staging = staging
        self.directory = directory
        self.base_manifest = base_manifest
        self.base_run = base_run

    def process(self, _, written, counts):
        from transforms.commit_step import commit_partition

        yield commit_partition(self.staging, self.directory, self.base_manifest, self.base_run, written, counts,
                               self.routes, self.previous, self.outcome_limits)


class CommitPartition(beam.PTransform):
    """(written shard names, written dead-letter file names, (key, count) pairs) -> the manifest."""

    def __init__(self, staging: str, directory: str, base_manifest: dict, base_run, routes=None,
                 outcome_limits: dict | None = None, previous: dict | None = None):
        super().__init__()
        self.fn = CommitPartitionFn(staging, directory, base_manifest, base_run, routes, outcome_limits, previous)

    def expand(self, inputs):
        shards, letters, counts = inputs
        pipeline = counts.pipeline
        all_written = (shards, letters) | "AllWritten" >> beam.Flatten()
        return (
            pipeline
            | "Start" >> beam.Create([None])
            | "Commit" >> beam.ParDo(self.fn, beam.pvalue.AsList(all_written), beam.pvalue.AsDict(counts))
        )


GERUNDS = {"read": "reading", "labeled": "labeling"}


def progress_line(done: float, seconds: float, expected: int | None, workers: int = 1, verb: str = "labeled",
                  rate: float | None = None) -> str:
    """'12,000 posts labeled in 60 s (240.0 posts/s since labeling began), about 33 s left of ~20,000':
    one worker's view, `seconds` since the run's launch; `rate` (default done / seconds) is the pace
    of this step alone, and the estimate assumes `workers` processes going at it."""
    since = f" since {GERUNDS.get(verb, verb)} began" if rate is not None else ""
    rate = done / max(seconds, 1e-9) if rate is None else rate
    line = f"{done:,.0f} posts {verb} in {seconds:.0f} s ({rate:,.1f} posts/s{since})"
    if workers > 1:
        line = f"this worker: {line}"
    if expected and rate > 0:
        left = max(expected - done * workers, 0) / (rate * workers)
        line += f", about {left:.0f} s left of ~{expected:,}"
    return line


class ProgressFn(beam.DoFn):
    """Passes rows through; logs, at most every `every` seconds, how many posts this worker process
    has `verb` (read, labeled), timed from `started` (time.time() at the run's launch: the clock of
    the end-of-run summary and of the manifest's wall_seconds). It runs where the work runs (the
    launcher blocks in pipeline.run() on the DirectRunner, and workers may be other processes), so
    the count is per process, shared by the instances of one run with the same verb. The labeling
    handler ticks it after each sub-batch (a share of its batch), so lines come at that interval
    even while a batch of --batch-size posts takes longer."""
    _state: dict[tuple, list] = {}  # (verb, started) -> [done, last logged, first tick, done at it]

    def __init__(self, expected: int | None = None, workers: int = 1, every: float = 10.0, verb: str = "labeled",
                 batched: bool = False, started: float | None = None):
        self.expected, self.workers, self.every, self.verb, self.batched = expected, workers, every, verb, batched
        self.started = time.time() if started is None else started

    def process(self, row):
        """row: one post, or (batched) a table or list of them."""
        self.tick(len(row) if self.batched else 1)
        yield row

    def tick(self, posts: float) -> None:
        now = time.time()
        state = self._state.setdefault((self.verb, self.started), [0, self.started, now, posts])
        state[0] += posts
        if now - state[1] >= self.every and now > state[2]:  # a first tick gives the step no pace yet
            state[1] = now
            # the step's own pace for the estimate: the read stage may run alone before labeling starts
            rate = (state[0] - state[3]) / (now - state[2])
            LOG.info("%s", progress_line(state[0], now - self.started, self.expected, self.workers, self.verb, rate))
