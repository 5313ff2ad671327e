"""The labeling pipeline's Beam layer, in one place: the DoFns and PTransforms that
pipelines/labeling.py wires, around pure functions (transforms/, models/): read the listed files
(ReadRecordsFn), prepare the rows (PrepareFn), label them through one RunInference for all the
classifiers of a run (ClassifiersHandler, Classify: models.batch_labeling.label_batch per batch),
turn them into Arrow tables (ToTableFn), count inside the pipeline (CountAs), log progress
(ProgressFn) and commit the partition (CommitPartition: transforms.commit_step.commit_partition).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from pipelines import console  # first: it keeps Beam's import-time warnings off the terminal
import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference

from models.batch_labeling import LabeledBatch, LoadedClassifiers, clean_text_length, label_batch, wants_shared_model
from models.checkpoints import ResolvedCheckpoint
from models.classifier import InferenceOptions, load_classifier
from transforms import contract, partition
from transforms.cleaning import CleaningOptions, prepare_row
from transforms.commit_step import commit_partition
from transforms.inputs import InputFile, InputProblem, open_listed
from transforms.language import language_counts
from transforms.records import DeadLetter, FieldMap, classifier_source, iter_file_records, safe_to_record

LOG = logging.getLogger(__name__)
METRICS_NAMESPACE = contract.METRICS_NAMESPACE
DEAD_LETTERS = "dead_letters"  # the tag of every step's dead letters (JSON lines, transforms.records.DeadLetter)
COUNTS = "counts"  # the tag of the (key, number) pairs the commit step sums (transforms.contract's keys)


# ------------------------------------------------------------------------------- read and prepare


class ReadRecordsFn(beam.DoFn):
    """A file listed at launch (transforms.inputs.InputFile) -> records (main output) and DeadLetter
    JSON lines (tagged DEAD_LETTERS): one for the whole file when it cannot be read as listed.
    worker_marker: a staging directory where each worker process that sets this up says so
    (transforms.partition.note_worker), for a launcher that waits for its workers to start."""

    def __init__(self, fields: FieldMap, kept_types: Mapping[str, pa.DataType], lang_field: str | None = None,
                 worker_marker: str | None = None):
        self.fields = fields
        self.lang_field = lang_field
        self.worker_marker = worker_marker
        self.kept_types = dict(kept_types)
        self.read = beam.metrics.Metrics.counter(METRICS_NAMESPACE, contract.RECORDS_READ)
        self.dead = beam.metrics.Metrics.counter(METRICS_NAMESPACE, contract.DEAD_LETTERED)
        self.files = beam.metrics.Metrics.counter(METRICS_NAMESPACE, contract.FILES_READ)
        self.broken_files = beam.metrics.Metrics.counter(METRICS_NAMESPACE, contract.FILES_BROKEN_OFF)

    def setup(self):
        if self.worker_marker:
            try:
                partition.note_worker(self.worker_marker)
            except Exception as exc:  # noqa: BLE001 - only a sign of life: the run goes on without it
                LOG.warning("could not record this worker in %s (%s)", self.worker_marker, exc)

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
                        item[contract.LANG] = value.get(self.lang_field)  # as given; add_languages normalizes it
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


class PrepareFn(beam.DoFn):
    """Records -> rows (prepare_row), with the read progress: one step per post before inference."""

    def __init__(self, options: CleaningOptions, max_tokens: int, progress: "ProgressFn"):
        self.options, self.max_tokens, self.progress = options, max_tokens, progress

    def process(self, record: dict):
        self.progress.tick(1)
        yield prepare_row(record, self.options, self.max_tokens)


class ProgressFn(beam.DoFn):
    """Passes rows through; logs, at most every `every` seconds, how many posts this worker process
    has `verb` (read, labeled), timed from `started` (time.time() at the run's launch: the clock of
    the end-of-run summary and of the manifest's wall_seconds). It runs where the work runs (the
    launcher blocks in pipeline.run() on the DirectRunner, and workers may be other processes), so
    the count is per process, shared by the instances of one run with the same verb; `workers`:
    how many processes share the job (console.progress_line: each of several says only its own
    count). The labeling handler ticks it after each sub-batch (a share of its batch), so lines come
    at that interval even while a batch of --batch-size posts takes longer. The time left waits for
    a pace measured over `min_posts` posts (console.time_left)."""
    _state: dict[tuple, list] = {}  # (verb, started) -> [done, last logged, first tick, done at it]

    def __init__(self, expected: int | None = None, workers: int = 1, every: float = 10.0, verb: str = "labeled",
                 batched: bool = False, started: float | None = None, min_posts: float = 0):
        self.expected, self.workers, self.every, self.verb, self.batched = expected, workers, every, verb, batched
        self.started = time.time() if started is None else started
        self.min_posts = min_posts

    def process(self, row):
        """row: one post, or (batched) a table or list of them."""
        self.tick(len(row) if self.batched else 1)
        yield row

    def tick(self, posts: float) -> None:
        if not posts:  # nothing new to say (a batch whose sub-batches ticked it all)
            return
        now = time.time()
        state = self._state.setdefault((self.verb, self.started), [0, self.started, now, posts])
        state[0] += posts
        if now - state[1] >= self.every and now > state[2]:  # a first tick gives the step no pace yet
            state[1] = now
            # the step's own pace, from its first tick: model loading and a read stage that ran
            # alone before labeling started are not in it
            LOG.info("%s", console.progress_line(
                state[0], now - self.started, verb=self.verb, pace=(state[0] - state[3], now - state[2]),
                expected=self.expected, min_posts=self.min_posts, workers=self.workers, pid=os.getpid()))


# ------------------------------------------------------------------------------- label


# The models that the dates of one run (pipelines/dates.py) load once in this process, by the
# run's key (ClassifiersHandler.shared_as): each date is a pipeline of its own, whose RunInference
# would otherwise load them again; the run releases them when its last date is done.
_SHARED_MODELS: dict[str, LoadedClassifiers] = {}
_SHARED_LOADING = threading.Lock()


def release_shared_models(key: str) -> None:
    _SHARED_MODELS.pop(key, None)


class ClassifiersHandler(ModelHandler[dict, Any, LoadedClassifiers]):
    """A ModelHandler for the classifiers of a run (checkpoints: name -> resolved checkpoint),
    fed rows; `routes`: name -> the languages it runs on (None: every language). `forward`
    replaces the forward pass of every classifier (tests inject faults with it). `progress`: what
    counts the posts labeled (ProgressFn), ticked after each sub-batch. `shared_as`: the key of
    the models loaded once in this process for the dates of one run (None: this pipeline's own)."""

    def __init__(self, checkpoints: Mapping[str, ResolvedCheckpoint],
                 routes: Optional[Mapping[str, Optional[frozenset[str]]]] = None,
                 options: InferenceOptions = InferenceOptions(), forward: Optional[Callable] = None,
                 progress=None, carried: Iterable[str] = (), shared_as: Optional[str] = None):
        batching: dict[str, Any] = {}
        if options.length_buckets:
            batching = dict(batch_length_fn=clean_text_length, batch_bucket_boundaries=sorted(options.length_buckets),
                            max_batch_duration_secs=options.bucket_wait_secs)
        shared = wants_shared_model(options.device)
        super().__init__(min_batch_size=options.batch_size, max_batch_size=options.batch_size,
                         large_model=shared, model_copies=options.model_copies if shared else None, **batching)
        self.checkpoints = dict(checkpoints)
        self.routes = {name: (routes or {}).get(name) for name in self.checkpoints}
        self.options = options
        self.forward = forward
        self.progress = progress
        self.carried = frozenset(carried)  # classifiers whose committed columns rows may carry (transforms.reuse)
        self.shared_as = shared_as

    def load_model(self) -> LoadedClassifiers:
        if self.shared_as is None:
            return self._load()
        with _SHARED_LOADING:
            if self.shared_as not in _SHARED_MODELS:
                _SHARED_MODELS[self.shared_as] = self._load()
            return _SHARED_MODELS[self.shared_as]

    def _load(self) -> LoadedClassifiers:
        return LoadedClassifiers({name: load_classifier(checkpoint, self.options, self.forward)
                                  for name, checkpoint in self.checkpoints.items()})

    def run_inference(self, batch: Sequence[dict], model: LoadedClassifiers,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[LabeledBatch]:
        labeled, stats = label_batch(batch, model, self.routes, self.carried, self.progress)
        for name, values in stats.items():
            for stat, value in values.items():
                if value:
                    Metrics.counter(self.metrics_namespace(name), stat).inc(value)
        for name, texts in labeled.inferences.items():
            Metrics.counter(self.metrics_namespace(name), "texts").inc(texts)
            Metrics.counter(self.metrics_namespace(name), "empty_texts").inc(len(batch) - texts)
        return [labeled]

    def get_num_bytes(self, batch: Sequence[dict]) -> int:
        return sum(len(row[contract.CLEAN_TEXT].encode("utf-8")) for row in batch if row.get(contract.CLEAN_TEXT))

    @staticmethod
    def metrics_namespace(name: str) -> str:
        """Where a classifier's counters go (real_tokens, padded_tokens, sub_batches, ...)."""
        return contract.classifier_namespace(name)

    def get_metrics_namespace(self) -> str:
        return contract.CLASSIFIERS_NAMESPACE


class SplitResultsFn(beam.DoFn):
    """LabeledBatch -> its labeled rows as one list (main output), the dead letters of its failed
    rows (DEAD_LETTERS) and its in-pipeline counts (COUNTS: inferences_<name>, tokens_<name>,
    labeled_<name>, skipped_language_<name>, and posts per language, failed ones included)."""

    def __init__(self):
        self.dead = Metrics.counter(METRICS_NAMESPACE, contract.DEAD_LETTERED)

    def process(self, result: LabeledBatch):
        for failed in result.failed:
            self.dead.inc()
            raw = json.dumps({contract.ID: failed.row[contract.ID], contract.TEXT: failed.row[contract.TEXT]},
                             ensure_ascii=False)
            letter = DeadLetter(classifier_source(failed.classifier), None, failed.reason, raw)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter.to_json())
        for name, count in result.inferences.items():
            yield beam.pvalue.TaggedOutput(COUNTS, (contract.inferences_key(name), count))
        for name, count in result.tokens.items():
            yield beam.pvalue.TaggedOutput(COUNTS, (contract.tokens_key(name), count))
        for name in result.labeled:
            yield beam.pvalue.TaggedOutput(COUNTS, (contract.labeled_key(name), result.labeled[name]))
            yield beam.pvalue.TaggedOutput(COUNTS, (contract.skipped_language_key(name), result.skipped_language[name]))
        for name, count in result.carried.items():
            yield beam.pvalue.TaggedOutput(COUNTS, (contract.carried_key(name), count))
        for pair in language_counts([*result.rows, *(failed.row for failed in result.failed)]):
            yield beam.pvalue.TaggedOutput(COUNTS, pair)
        if result.rows:
            yield result.rows


class Classify(beam.PTransform):
    """rows -> lists of labeled rows, one per batch (main output), dead letters (DEAD_LETTERS) and
    counts (COUNTS), through one RunInference with the handler."""

    def __init__(self, handler: ClassifiersHandler):
        super().__init__()
        self.handler = handler

    def expand(self, rows):
        return (rows
                | "RunInference" >> RunInference(self.handler)
                | "Split" >> beam.ParDo(SplitResultsFn()).with_outputs(DEAD_LETTERS, COUNTS, main="rows"))


# ------------------------------------------------------------------------------- write, count, commit


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
        yield pa.Table.from_pylist(rows, schema=self.schema)  # exactly the output columns, absent ones null


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
