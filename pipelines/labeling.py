"""The labeling job as a library: a typed configuration (LabelConfig) and label(), which builds
and runs the pipeline for one partition. pipelines/label_corpus.py turns a command line into a
LabelConfig; the benchmarks and tests may build one directly.

Wiring only: the logic lives in transforms/ and models/ (docs/architecture.md).
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import io
import itertools
import json
import logging
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Mapping, Optional, Sequence

from pipelines import console  # first: it keeps Beam's import-time warnings off the terminal
import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from models.checkpoints import (CheckpointError, ResolvedCheckpoint, forget_validated, load_config_dict, resolve,
                                validate)
from models.batch_labeling import backend_record
from models.classifier import InferenceOptions
from models.openvino_backend import has_int8, int8_missing_message
from models.classifiers import classifier_for
from models.heads import CheckpointMismatch, Head
from models.runtime import clean_token_limit
from pipelines.beam_steps import (COUNTS, DEAD_LETTERS, Classify, ClassifiersHandler, CommitPartition, CountAs,
                                  PrepareFn, ProgressFn, ReadRecordsFn, ToTableFn, release_shared_models)
from pipelines.runner import Runner, dies_with_this_process, finished
from transforms import contract, language, partition, reuse, stopping, stores
from transforms.cleaning import CleaningOptions
from transforms.inputs import InputFile, decompressed, list_inputs
from transforms.outcome import DEFAULT_MAX_DEAD_SHARE
from transforms.records import (DeadLetter, FieldMap, columns_of, infer_kept_types, input_format, is_record_letter,
                                iter_file_records, likely_text_field)

LOG = logging.getLogger("pipelines.label_corpus")
KEPT_TYPE_SAMPLE = 1000
MAX_COLUMNS_SHOWN = 20  # of a file without the text field, in its one-line message


class UsageError(ValueError):
    """A problem with the command line or the inputs, found before any data is labeled."""


class WorkerProblem(RuntimeError):
    """The job's workers cannot run its code (none started before the deadline, or one lacks a
    module this launcher has): the message names what failed and the fix; nothing was committed."""


class SuspectRun(RuntimeError):
    """The run finished and its partition was written and accounted, but its counts do not look
    like success (transforms.outcome.run_problem); the message names the reason and the fix."""


@dataclass(frozen=True)
class Classifier:
    checkpoint: ResolvedCheckpoint
    head: Head


@dataclass(frozen=True)
class LabelConfig:
    """One labeling run (what label_corpus's command line becomes).

    input / output: a file glob and the output directory ({date} already filled in);
    checkpoints: classifier name -> checkpoint reference (local dir, gs://, s3://, hub id), in run
    order; routes: classifier name -> the languages it runs on (None: every language);
    fields: the input's id, text and kept fields; lang_field: the input's language field, if any;
    inference / cleaning: how the models run and what they see; progress_every: seconds between
    progress lines (each worker process prints its own); worker_start_timeout: seconds to
    wait for the job's first worker (None: pipelines.runner.Runner.worker_start_timeout's default;
    0: no deadline); beam_args: Beam's own options;
    dates: several dates, each filling {date} in input and output in turn (pipelines/dates.py: one
    partition each, the models shared; a string is read as --dates: 'FIRST..LAST' or 'D1,D2');
    progress: the progress lines and the summary on stderr (None: when stderr is a terminal or
    this runs in a notebook)."""

    input: str
    output: str
    checkpoints: Mapping[str, str]
    routes: Mapping[str, Optional[frozenset[str]]]
    fields: FieldMap = field(default_factory=FieldMap)
    lang_field: Optional[str] = None
    inference: InferenceOptions = field(default_factory=InferenceOptions)
    cleaning: CleaningOptions = field(default_factory=CleaningOptions)
    num_shards: int = 0
    date: Optional[str] = None
    skip_if_done: bool = False
    no_reuse: bool = False
    wait: bool = True
    cost_per_hour: Optional[float] = None
    allow_empty: bool = False
    max_dead_share: float = DEFAULT_MAX_DEAD_SHARE
    progress_every: float = 10.0
    worker_start_timeout: Optional[float] = None
    beam_args: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    progress: Optional[bool] = None


# LabelResult.status values, and the exit status of each (what the command line returns).
DONE, SKIPPED, SUBMITTED, SUSPECT, FAILED, STOPPED = "done", "skipped as done", "submitted", "suspect", "failed", \
    "stopped"


@dataclass(frozen=True)
class LabelResult:
    """What label() did for one partition: its directory (output) and date; status (DONE: committed
    with _SUCCESS; SKIPPED: already complete, --skip-if-done; SUBMITTED: --no-wait, the job commits
    it; SUSPECT: written without _SUCCESS, exit 3; FAILED; STOPPED) and the exit status it means;
    from the committed manifest: rows, dead letters and per classifier its counts (labeled,
    skipped_language, inferences: the posts its model ran on, carried: those whose committed values
    it kept), the classifiers that ran and those carried; problem: why it is not DONE or SKIPPED;
    pipeline_result: Beam's PipelineResult (its metrics; under --no-wait the job), None when nothing ran."""

    output: str
    status: str
    date: Optional[str] = None
    exit_code: int = 0
    rows: Optional[int] = None
    dead_letters: Optional[int] = None
    classifiers: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    ran: tuple[str, ...] = ()
    carried: tuple[str, ...] = ()
    problem: Optional[str] = None
    pipeline_result: object = field(default=None, repr=False, compare=False)

    @classmethod
    def of_partition(cls, config: "LabelConfig", status: str, exit_code: int = 0, problem: Optional[str] = None,
                     pipeline_result=None, ran: bool = True) -> "LabelResult":
        """The result of a run whose partition is config.output, counted from its manifest (the
        committed one, suspect or not; none: no counts). ran: False when this run ran nothing."""
        manifest = partition.read_manifest(config.output, suspect=True) or {}
        work, provenance = manifest.get("reuse") or {}, manifest.get("provenance") or {}
        names = [name for name in config.checkpoints if name in (manifest.get("checkpoints") or {})]  # run order
        counts = {name: {**(manifest.get("by_classifier") or {}).get(name, {}),
                         "inferences": (manifest.get("inferences") or {}).get(name, 0),
                         "carried": provenance.get(name, {}).get("carried", 0)} for name in names}
        carried = tuple(work.get("carried") or ()) if ran else ()
        return cls(config.output, status, config.date, exit_code, manifest.get("rows_written"),
                   manifest.get("dead_lettered"), counts,
                   tuple(name for name in names if name not in carried) if ran and manifest else (),
                   carried, problem, pipeline_result)


class SharedModels:
    """The checkpoints of a run of several dates (pipelines/dates.py), shared by its dates in this
    process: resolved once before the first date, validated (their weights loaded) when the first
    date with work needs them, and loaded once for the dates' pipelines when they run in this
    process (ClassifiersHandler's shared_as: the key of that one load). A date skipped as done
    loads nothing."""

    def __init__(self, refs: Mapping[str, str]):
        self.checkpoints = resolve_checkpoints(dict(refs))
        self.key = uuid.uuid4().hex
        self._classifiers: Optional[dict[str, Classifier]] = None

    def validated(self, keep_models: bool) -> dict[str, "Classifier"]:
        if self._classifiers is None:
            self._classifiers = validate_checkpoints(self.checkpoints, keep_models)
        return self._classifiers

    def release(self) -> None:
        """Drop the models this process loaded for the dates (ClassifiersHandler.shared)."""
        release_shared_models(self.key)


def label(config: LabelConfig, test_pipeline: Optional[beam.Pipeline] = None, forward: Optional[Callable] = None,
          *, command_line: bool = False):
    """Label config's partition: a LabelResult; with config.dates, one LabelResult per date, in
    their order (pipelines/dates.py: a date that fails is reported in its result and the others go
    on). `forward` replaces every classifier's forward pass (tests inject faults with it).
    Problems raise UsageError, CheckpointError, SuspectRun (the partition was written: exit 3),
    the commit's errors; their messages name LabelConfig's fields (command_line: the flags).
    After a stop signal (transforms.stopping) whatever failed raises Stopped, whose message says
    what state the partition (or each date) is in. Progress and the summary show as
    config.progress says; transformers' and the hub's own messages and bars do not (-v on the
    command line)."""
    shown = console.interactive() if config.progress is None else config.progress
    with contextlib.ExitStack() as stack:
        if not command_line:  # the command line set its console up itself (console.setup)
            if not console.verbose():
                stack.enter_context(console.quiet_libraries())
            if shown:
                stack.enter_context(console.showing_progress())
        try:
            if config.dates:
                if test_pipeline is not None:
                    raise UsageError("dates: each date runs a pipeline of its own; give one date with a test pipeline")
                from pipelines.dates import label_dates  # which runs label_one for each date

                return label_dates(config, forward, command_line)
            return label_one(config, test_pipeline, forward)
        except (UsageError, CheckpointError, SuspectRun, partition.ReconciliationError,
                partition.ConcurrentRunError, partition.VerificationError) as exc:
            if command_line:
                raise
            raise type(exc)(console.in_config_terms(str(exc))) from exc


def label_one(config: LabelConfig, test_pipeline: Optional[beam.Pipeline] = None, forward: Optional[Callable] = None,
              models: Optional[SharedModels] = None) -> LabelResult:
    """One partition (config.output): its LabelResult; errors raised as label() says.
    models: the checkpoints and models that the dates of one run share."""
    run = {}
    try:
        return _label(config, test_pipeline, forward, run, models)
    except BaseException as exc:
        signum = stopping.requested()
        if signum is None:
            raise
        raise stopping.Stopped(signum, f"stopped by {signal.Signals(signum).name}: "
                                       f"{partition.state_line(config.output, run.get('id'))}") from None
    finally:
        forget_validated()


def use_stores(options, paths: Sequence[str]) -> None:
    """Beam's options registered for FileSystems before their first use, and the buckets of
    paths checked (transforms/stores.py); a store that cannot be used is a UsageError."""
    stores.configure(options)
    try:
        stores.check(paths)
    except stores.StoreError as exc:
        raise UsageError(str(exc)) from None


def finish_dead_commit(output: str) -> None:
    """A commit whose process is provably gone is finished or rolled back now, before this run
    reads which partition it replaces (else it would lose a race with a dead run)."""
    try:
        partition.recover(output)
    except partition.ConcurrentRunError as exc:  # another run is recovering it: this run's commit waits its turn
        LOG.warning("%s", exc)


def _after_failure(output: str, run_id: str, local: bool, result, created: tuple[str, ...] = ()) -> None:
    """A run that failed or was stopped removes its own staging, and the output directories it
    `created` as long as they are empty, unless it is a remote job that still runs (its launcher
    was stopped: the job is asked to cancel)."""
    if not local and (result is None or not finished(result)):
        if result is not None and stopping.requested() is not None:
            try:
                result.cancel()
                LOG.warning("asked the job to cancel; a later run that commits %s deletes its staging once it "
                            "is %d days old", output, partition.STAGING_MAX_AGE_S // 86400)
            except Exception as exc:  # noqa: BLE001 - the job may be gone already
                LOG.warning("could not cancel the job (%s)", exc)
        return
    try:
        partition.discard_staging(output, run_id)
        partition.remove_empty(created)
    except Exception as exc:  # noqa: BLE001 - the run's own error is the one to report
        LOG.warning("could not delete the staging of run %s (%s)", run_id, exc)


def _label(config: LabelConfig, test_pipeline: Optional[beam.Pipeline], forward: Optional[Callable], run: dict,
           models: Optional[SharedModels]) -> LabelResult:
    runner = Runner.from_args(config.beam_args)  # Beam's options, parsed once
    # the CPU backend and precision settled here, so the manifest and the workers name the same
    config = dataclasses.replace(config, inference=config.inference.with_cpu_choice())
    use_stores(runner.options, [config.input, config.output, *config.checkpoints.values()])
    checked = preflight(config, runner, models)
    if checked is None:
        return LabelResult.of_partition(config, SKIPPED, ran=False)
    launch = start_run(config, checked)
    pipeline = test_pipeline or runner.make_pipeline()
    waits_for_workers = config.wait and not dies_with_this_process(pipeline)
    start_deadline = runner.worker_start_timeout(config.worker_start_timeout) if waits_for_workers else 0
    shared_as = models.key if models is not None and runner.in_this_process else None
    build(pipeline, config, checked, launch, runner, forward, start_deadline, shared_as)
    run["id"] = launch.run_id
    return finish(pipeline, config, launch, start_deadline)


@dataclass(frozen=True)
class Preflight:
    """What a run settles before any data is read: its classifiers (validated), the inputs listed
    at launch (and the matches not read), the kept fields' types, what the models read at most
    (max_tokens), the row options reuse compares, the committed partition it may carry from
    (previous) and the run it replaces (base_run), the reuse plan, the output schema, and each
    classifier's languages (the command line's, else its checkpoint's default: default_routes)."""

    classifiers: dict[str, Classifier]
    listed: list[InputFile]
    not_read: list[DeadLetter]
    kept_types: dict[str, pa.DataType]
    max_tokens: int
    row_options: dict
    inputs: dict
    previous: Optional[dict]
    base_run: Optional[str]
    work: reuse.ReusePlan
    schema: pa.Schema
    routes: dict[str, Optional[frozenset[str]]]


@dataclass(frozen=True)
class Launch:
    """A run as launched: its id, its clock (the progress lines', the summary's and the
    manifest's), its staging directory, about how many records its inputs hold, and the local
    output directories it is about to create (removed again if it stops before writing)."""

    run_id: str
    started: datetime
    staging: str
    expected: Optional[int]
    created: tuple[str, ...] = ()


def preflight(config: LabelConfig, runner: Runner, models: Optional[SharedModels] = None) -> Optional[Preflight]:
    """Checkpoints, inputs, reuse and schema, before any data is read (no model weights are
    loaded until there is work to do); None when --skip-if-done finds nothing to do.
    models: the checkpoints the dates of one run share (resolved and validated once)."""
    checkpoints = models.checkpoints if models is not None else resolve_checkpoints(dict(config.checkpoints))
    backend = backend_record(config.inference)
    if backend == {"backend": "openvino", "precision": "int8"}:
        missing = [c.ref for c in checkpoints.values() if not has_int8(c.local_dir, c.revision)]
        if missing:  # never a conversion of minutes inside each worker
            raise UsageError(int8_missing_message(missing))
    try:
        max_tokens = clean_token_limit(load_config_dict(c.local_dir) for c in checkpoints.values())
        routes = default_routes(config.routes, checkpoints)
        listed, not_read = list_launch_inputs(config.input)
    except (UsageError, CheckpointMismatch):
        validate_checkpoints(checkpoints)  # a checkpoint's problem is reported first, in its words
        raise
    check_text_field([item.path for item in listed], config.fields)
    kept_types = kept_field_types([item.path for item in listed], list(config.fields.keep_fields))
    row_options = reuse.row_options(config.fields, config.lang_field, config.cleaning, max_tokens, kept_types)
    inputs = inputs_manifest(listed, not_read)
    finish_dead_commit(config.output)
    previous = partition.read_manifest(config.output)  # the complete partition (_SUCCESS) reuse may carry from
    base_run = partition.committed_run(config.output)  # complete or suspect: another run committing after this is a race we lose
    work = reuse.plan(previous, identities(checkpoints, routes, backend), row_options, inputs,
                      reuse=not config.no_reuse) if config.skip_if_done else reuse.ReusePlan(
        True, "no --skip-if-done", rerun=tuple(checkpoints))
    if config.skip_if_done:
        if work.nothing_to_do:
            LOG.info("skipped: %s is already complete (_SUCCESS at %s, %s rows) with the same checkpoints, routing "
                     "and inputs (--skip-if-done)", config.output, previous.get("finished"), previous.get("rows_written"))
            return None
        LOG.info("--skip-if-done: %s: %s", config.output, work.reason)
    # A worker in this process takes the models validation loaded.
    classifiers = (models.validated(keep_models=runner.in_this_process) if models is not None
                   else validate_checkpoints(checkpoints, keep_models=runner.in_this_process))
    if config.lang_field is None and listed:
        hint = lang_field_hint(listed[0].path)
        if hint:
            LOG.info("%s", hint)
    schema = output_schema(kept_types, classifiers, backend)
    warn_on_cleaning_mismatch(classifiers, config.cleaning)
    return Preflight(classifiers, listed, not_read, kept_types, max_tokens, row_options, inputs, previous, base_run,
                     work, schema, routes)


def start_run(config: LabelConfig, checked: Preflight) -> Launch:
    """The run's id, clock and staging directory, and the line that says what it labels."""
    started = datetime.now(timezone.utc)  # the one clock of the progress lines, the summary and the manifest
    run_id = partition.new_run_id(started, uuid.uuid4().hex[:8])
    expected = expected_records([item.path for item in checked.listed])
    files = f"{len(checked.listed)} file(s)"
    LOG.info("labeling %s (%s) -> %s with %s", config.input, f"{files}, about {expected:,} posts" if expected else files,
             config.output, ", ".join(f"{n} [{language.describe(checked.routes[n])}]" for n in checked.classifiers))
    return Launch(run_id, started, partition.staging_dir(config.output, run_id), expected,
                  partition.missing_directories(config.output))


def build(pipeline: beam.Pipeline, config: LabelConfig, checked: Preflight, launch: Launch, runner: Runner,
          forward: Optional[Callable], start_deadline: float = 0, shared_as: Optional[str] = None) -> None:
    """Wire the run into pipeline: read, prepare, [carry], classify, write to staging, commit
    (docs/architecture.md, Data flow). start_deadline: the launcher waits that long for a worker
    to say it started (0: it does not wait, and no worker says so). shared_as: the key under which
    the dates of one run in this process load their models once (ClassifiersHandler)."""
    classifiers, work, started = checked.classifiers, checked.work, launch.started.timestamp()
    parsed = (
        pipeline
        | "ListedInputs" >> beam.Create(checked.listed, reshuffle=False)  # the files listed at launch, no new match
        | "SpreadFiles" >> beam.Reshuffle()
        | "ReadRecords" >> beam.ParDo(ReadRecordsFn(config.fields, checked.kept_types, config.lang_field,
                                                    worker_marker=launch.staging if start_deadline else None))
        .with_outputs(DEAD_LETTERS, main="records")
    )
    counts = [parsed.records | "CountRecords" >> CountAs(contract.RECORDS_READ),
              parsed[DEAD_LETTERS] | "RecordLetters" >> beam.Filter(is_record_letter)
              | "CountRecordLetters" >> CountAs(contract.RECORDS_READ)]
    min_posts = config.inference.batch_size  # a time left only from the pace over a whole batch or more
    read_progress = ProgressFn(launch.expected, runner.worker_processes, config.progress_every, verb="read",
                               started=started, min_posts=min_posts)
    rows = parsed.records | "Prepare" >> beam.ParDo(PrepareFn(config.cleaning, checked.max_tokens, read_progress))
    if work.carried:
        carried_columns = [f.name for name in work.carried for f in classifiers[name].head.fields]
        committed = [partition.join(config.output, name) for name in checked.previous["files"]
                     if name.endswith(contract.SHARD_SUFFIX)]
        rows = rows | "CarryCommitted" >> reuse.AttachCarried(committed, carried_columns)
    # Reshuffle: the records of one large input file are spread over workers for inference
    # instead of staying fused with the worker that read the file.
    rows = rows | "Spread" >> beam.Reshuffle()
    handler = ClassifiersHandler({name: c.checkpoint for name, c in classifiers.items()}, checked.routes,
                                 config.inference, forward, carried=work.carried,
                                 progress=ProgressFn(launch.expected, runner.worker_processes, config.progress_every,
                                                     started=started, min_posts=min_posts),
                                 shared_as=shared_as)
    labeled = rows | "Classify" >> Classify(handler)
    counts.append(labeled[COUNTS])
    dead_letters = [parsed[DEAD_LETTERS], labeled[DEAD_LETTERS],
                    pipeline | "UnreadInputs" >> beam.Create([letter.to_json() for letter in checked.not_read])]
    tables = labeled.rows | "ToArrow" >> beam.ParDo(ToTableFn(checked.schema)).with_outputs(COUNTS, main="tables")
    counts += [tables[COUNTS], pipeline | "NoEmptyText" >> beam.Create([(contract.EMPTY_TEXT_ROWS, 0)])]
    shards = (tables.tables | "WriteParquet" >> beam.io.WriteToParquetBatched(
        partition.join(launch.staging, contract.SHARD_PREFIX), checked.schema, codec="snappy",
        file_name_suffix=partition.STAGED_SHARD_SUFFIX, shard_name_template=contract.SHARD_TEMPLATE,
        num_shards=config.num_shards))
    letters = dead_letters | "AllDeadLetters" >> beam.Flatten() | "WriteDeadLetters" >> beam.io.WriteToText(
        partition.join(launch.staging, partition.ERRORS_DIR, "errors"), file_name_suffix=".jsonl")
    totals = counts | "AllCounts" >> beam.Flatten() | "SumCounts" >> beam.CombinePerKey(sum)
    manifest = {**base_manifest(config, [item.path for item in checked.listed], classifiers, launch.run_id,
                                launch.started.isoformat(), type(pipeline.runner).__name__, runner.cost_workers,
                                checked.routes),
                "inputs": checked.inputs, "row_options": checked.row_options, "reuse": work.to_manifest()}
    _ = (shards, letters, totals) | "CommitPartition" >> CommitPartition(
        launch.staging, config.output, manifest, checked.base_run, checked.routes, previous=checked.previous,
        outcome_limits={"allow_empty": config.allow_empty, "max_dead_share": config.max_dead_share})


def finish(pipeline: beam.Pipeline, config: LabelConfig, launch: Launch, start_deadline: float = 0) -> LabelResult:
    """Run the pipeline (and, unless --no-wait, wait for it: with start_deadline, at most that
    long for a first worker); after a failure remove this run's staging; then the summary, and
    SuspectRun for a run whose counts do not look like success. Returns the run's LabelResult."""
    local = dies_with_this_process(pipeline)
    result = None
    try:
        # A pipeline in this process: this process owns its staging (its death is the run's,
        # and a later run may then delete it); a remote job's outlives its launcher.
        with partition.claim_staging(launch.staging) if local else contextlib.nullcontext():
            result = pipeline.run()
            if config.wait:
                wait_for_workers(result, launch.staging, start_deadline)
    except BaseException as exc:
        ours = _our_error(exc) or (None if local else _worker_error(exc))  # a worker elsewhere lacks a module
        # A job none of whose workers could run its code wrote nothing that still moves.
        _after_failure(config.output, launch.run_id, local or isinstance(ours, WorkerProblem), result, launch.created)
        if isinstance(ours, WorkerProblem):
            ours = WorkerProblem(f"{ours}; {partition.state_line(config.output, launch.run_id)}")
        raise ours or exc
    if local and finished(result):
        partition.discard_staging(config.output, launch.run_id)  # what a late heartbeat may have left
    if not config.wait:
        if not finished(result):
            LOG.info("submitted; the job commits %s itself (_SUCCESS when complete)", config.output)
            return LabelResult(config.output, SUBMITTED, config.date, pipeline_result=result)
        LOG.info("--no-wait: the %s ran the job in this process, so it is done", type(pipeline.runner).__name__)
    done = partition.read_manifest(config.output, suspect=True)
    if done and done.get("run_id") == launch.run_id:
        # no label lines for a classifier that labeled nothing (every text empty or routed away): 0.0% of nothing
        labeled = [name for name, counts in (done.get("by_classifier") or {}).items() if counts.get("labeled")]
        for line in console.summary_lines(done, time.time() - launch.started.timestamp(),
                                           console.label_lines(config.output, only=labeled)):
            LOG.info("%s", line)
        if done.get("problem"):
            raise SuspectRun(f"{config.output} was written, but {done['problem']}")
    return LabelResult.of_partition(config, DONE, pipeline_result=result)


def wait_for_workers(result, staging: str, deadline_s: float) -> None:
    """result.wait_until_finish(); with deadline_s, the job is cancelled when no worker process
    has recorded itself in staging (transforms.partition.note_worker) that long after it was
    submitted, and WorkerProblem says so: a worker that cannot start dies where only its own log
    (the worker pool's) shows it, and the job would wait for it for ever."""
    if not deadline_s:
        result.wait_until_finish()
        return
    gave_up = threading.Event()

    def noted() -> bool:
        try:
            return partition.worker_noted(staging)
        except Exception as exc:  # noqa: BLE001 - a store that cannot list now: look again
            LOG.debug("could not list %s for the job's workers (%s)", staging, exc)
            return False

    def watch() -> None:
        until = time.monotonic() + deadline_s
        while not finished(result):
            if noted():
                return
            if time.monotonic() >= until:
                gave_up.set()
                try:
                    result.cancel()
                except Exception as exc:  # noqa: BLE001 - the launcher exits all the same
                    LOG.warning("could not cancel the job (%s)", exc)
                return
            time.sleep(min(WORKER_POLL_S, max(until - time.monotonic(), 0.1)))

    threading.Thread(target=watch, name="worker start deadline", daemon=True).start()
    try:
        result.wait_until_finish()
    except Exception:  # noqa: BLE001 - a job cancelled for its workers fails in the runner's words
        if not gave_up.is_set():
            raise
    if gave_up.is_set():
        raise WorkerProblem(f"no worker of the job started within {deadline_s:g} s (--worker-start-timeout): a "
                            "worker whose Python lacks Beam or this project dies at start, and only the worker "
                            "pool's or the workers' own log says why; " + WORKER_FIX)


WORKER_POLL_S = 2.0  # how often the launcher looks for the job's first worker
WORKER_FIX = ("give the workers this project: --setup_file ./setup.py, or run them in its container image "
              "(deploy/Dockerfile, --sdk_container_image)")


def _worker_error(exc: BaseException) -> Optional[WorkerProblem]:
    """A job that failed because a worker lacks a module this launcher imports (this project, or
    one of its requirements) as one WorkerProblem line; None for any other failure."""
    import importlib.util
    import re

    seen = exc
    while seen is not None:
        if isinstance(seen, WorkerProblem):
            return seen
        for module in re.findall(r"ModuleNotFoundError: No module named '([\w.]+)'", str(seen)):
            if importlib.util.find_spec(module.split(".")[0]) is not None:
                return WorkerProblem(f"a worker of the job cannot import {module!r}, which this launcher has "
                                     f"(ModuleNotFoundError on the worker): {WORKER_FIX}")
        seen = seen.__cause__ or seen.__context__
    return None


def default_routes(routes: Mapping[str, Optional[frozenset[str]]], checkpoints: Mapping[str, ResolvedCheckpoint]
                   ) -> dict[str, Optional[frozenset[str]]]:
    """`routes`, with each classifier it leaves out routed by its checkpoint's default (a generic
    classifier's config.json may name its languages; else every language)."""
    full = {}
    for name, checkpoint in checkpoints.items():
        try:
            full[name] = routes[name] if name in routes else classifier_for(name).languages_for(
                load_config_dict(checkpoint.local_dir))
        except ValueError as exc:  # its config.json names languages that are not ISO 639-1 codes
            raise CheckpointError(f"classifier {name!r}: checkpoint {checkpoint.ref!r} is refused: {exc}") from exc
    return full


def load_classifiers(refs: dict[str, str], keep_models: bool = False) -> dict[str, Classifier]:
    """Resolve and validate every checkpoint; all problems are reported together. keep_models:
    hold the models validation loaded for a worker in this process (models.checkpoints.take_validated)."""
    return validate_checkpoints(resolve_checkpoints(refs), keep_models)


def resolve_checkpoints(refs: dict[str, str]) -> dict[str, ResolvedCheckpoint]:
    """Each checkpoint made available locally with its revision (its files' hash, or the hub
    commit): no weights loaded. All problems are reported together."""
    checkpoints, problems, unfetched = {}, [], []
    for name, ref in refs.items():
        try:
            checkpoints[name] = resolve(name, ref)
        except CheckpointError as exc:
            problems.append(str(exc))
            unfetched += exc.unfetched
    if problems:
        raise CheckpointError("\n".join(problems), unfetched=tuple(unfetched))
    return checkpoints


def validate_checkpoints(checkpoints: dict[str, ResolvedCheckpoint], keep_models: bool = False
                         ) -> dict[str, Classifier]:
    """Prove each checkpoint works (models.checkpoints.validate: loads its weights); all problems together."""
    classifiers, problems = {}, []
    for name, checkpoint in checkpoints.items():
        try:
            classifiers[name] = Classifier(checkpoint, validate(checkpoint, keep=keep_models))
        except CheckpointError as exc:
            problems.append(str(exc))
    if problems:
        raise CheckpointError("\n".join(problems))
    return classifiers


def identities(checkpoints: Mapping[str, ResolvedCheckpoint], routes, backend: Mapping[str, str]) -> dict[str, dict]:
    return {name: reuse.classifier_identity(c.revision, language.describe_routing(routes.get(name)), backend)
            for name, c in checkpoints.items()}


def list_launch_inputs(pattern: str) -> tuple[list[InputFile], list[DeadLetter]]:
    """The input files, fixed at launch (transforms.inputs.list_inputs), and the matches that
    cannot be read (dead letters of the run). UsageError when nothing matches or nothing can be read."""
    try:
        listed, not_read = list_inputs(pattern)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if not listed and not_read:
        raise UsageError(f"--input {pattern!r}: none of the {len(not_read)} match(es) can be read "
                         f"(first: {not_read[0].source}: {not_read[0].reason})")
    if not listed:
        raise UsageError(f"--input {pattern!r} matches no files")
    return listed, not_read


def inputs_manifest(listed: Sequence[InputFile], not_read: Sequence[DeadLetter]) -> dict:
    """The manifest's record of the inputs at launch: each file's size and version, and the matches not read."""
    return {"files": [item.to_dict() for item in listed],
            "not_read": [{"path": letter.source, "reason": letter.reason} for letter in not_read]}


def kept_field_types(paths: Sequence[str], keep_fields: list[str]) -> dict[str, pa.DataType]:
    """Column types of kept fields: the Parquet schema's, or inferred from the first records, of the
    first input that can be read (a pre-read never fails the run: the reader dead-letters a bad
    file, and without any readable sample the kept fields are strings)."""
    if not keep_fields:
        return {}
    for path in paths:
        try:
            return _kept_field_types(path, keep_fields)
        except Exception as exc:  # noqa: BLE001 - the file's own read reports it
            LOG.info("kept-field types: %s cannot be sampled (%s); trying the next input", path, type(exc).__name__)
    return infer_kept_types([], keep_fields)


def _kept_field_types(first_path: str, keep_fields: list[str]) -> dict[str, pa.DataType]:
    if input_format(first_path) == "parquet":
        import pyarrow.parquet as pq

        with FileSystems.open(first_path) as handle:
            schema = pq.ParquetFile(handle).schema_arrow
        return {name: (schema.field(name).type if name in schema.names else pa.string()) for name in keep_fields}
    return infer_kept_types(sample_records(first_path), keep_fields)


def sample_records(path: str, limit: int = KEPT_TYPE_SAMPLE) -> list:
    """The first `limit` values one input file holds (dead letters left out), read as the records themselves are."""
    if input_format(path) == "parquet":
        opened = FileSystems.open(path)  # Parquet compresses its own pages, and its reader seeks
    else:
        opened = decompressed(io.BufferedReader(FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)),
                            path)
    with opened as handle:
        items = itertools.islice(iter_file_records(path, handle), limit)
        return [item[1] for item in items if not isinstance(item, DeadLetter)]


def check_text_field(paths: Sequence[str], fields: FieldMap) -> None:
    """UsageError, before any model loads, when no input file has the text field: a Parquet file's
    schema, a CSV file's header or the first records of a JSON Lines file show its columns. The
    files are tried in turn until one has it (usually the first); a file that cannot be sampled
    or holds no records says nothing (the reader accounts for it), so such inputs still run."""
    missing = []  # (path, its columns)
    for path in paths:
        try:
            columns = input_columns(path)
        except Exception as exc:  # noqa: BLE001 - the file's own read reports it
            LOG.info("text field: %s cannot be sampled (%s)", path, type(exc).__name__)
            continue
        if fields.text_field in columns:
            return
        if columns:
            missing.append((path, columns))
    if missing:
        guess = likely_text_field(sample_records(missing[0][0], 100), exclude=(fields.id_field,))
        raise UsageError(missing_text_field_message(missing, guess, fields.text_field))


def input_columns(path: str) -> list[str]:
    """A file's columns: a Parquet file's schema, else the fields of its first records (CSV: its header)."""
    if input_format(path) == "parquet":
        import pyarrow.parquet as pq

        with FileSystems.open(path) as handle:
            return list(pq.ParquetFile(handle).schema_arrow.names)
    return columns_of(sample_records(path))


def missing_text_field_message(missing: Sequence[tuple[str, list[str]]], guess: Optional[str], text_field: str) -> str:
    """The one line for inputs without the text field: the first file's columns and the flag that fixes it."""
    path, columns = missing[0]
    which = f"{path} has" if len(missing) == 1 else f"none of {len(missing)} files has it; the first, {path}, has"
    shown = ", ".join(columns[:MAX_COLUMNS_SHOWN]) + (f" (+{len(columns) - MAX_COLUMNS_SHOWN} more)"
                                                     if len(columns) > MAX_COLUMNS_SHOWN else "")
    return (f"no {text_field!r} field in the input: {which} the columns {shown}; name the column that holds "
            f"the text with --text-field (e.g. --text-field {guess or 'COLUMN'})")


LANG_FIELDS = ("lang", "language")  # input fields that usually hold a post's language


def lang_field_hint(first_path: str) -> str | None:
    """A line saying that --lang-field could use the input's own language field, when the first
    records of the first file have one whose values are mostly language codes; else None."""
    try:
        with FileSystems.open(first_path) as handle:
            items = itertools.islice(iter_file_records(first_path, handle), KEPT_TYPE_SAMPLE)
            sample = [item[1] for item in items if not isinstance(item, DeadLetter) and isinstance(item[1], dict)]
    except Exception:  # noqa: BLE001 - only a hint: the run reads (and accounts for) the file itself
        return None
    for name in LANG_FIELDS:
        usable = sum(1 for record in sample if language.normalize(record.get(name)))
        if sample and usable >= len(sample) / 2:
            return (f"the input has a {name!r} field: --lang-field {name} would take each post's language from it "
                    "(now it is detected from the text, and a post too short or mixed to tell is `und`, which "
                    "only the classifiers whose script fits its text run on)")
    return None


def output_schema(kept_types: dict[str, pa.DataType], classifiers: dict[str, Classifier],
                  backend: Optional[Mapping[str, str]] = None) -> pa.Schema:
    """The output's schema, its metadata naming each classifier's checkpoint and what ran the
    models (backend: backend_record's; left out where None)."""
    fields = [*contract.BASE_FIELDS]
    fields += [pa.field(name, kept_types[name]) for name in kept_types]
    fields.append(contract.CLEAN_TEXT_FIELD)
    for classifier in classifiers.values():
        fields += classifier.head.fields
    owners: dict[str, list[str]] = {}
    for f in (*contract.BASE_FIELDS, contract.CLEAN_TEXT_FIELD):
        owners.setdefault(f.name, []).append("the base columns")
    for name in kept_types:
        owners.setdefault(name, []).append("--keep-fields")
    for name, classifier in classifiers.items():
        for f in classifier.head.fields:
            owners.setdefault(f.name, []).append(f"classifier {name!r}")
    clashes = {column: who for column, who in owners.items() if len(who) > 1}
    if clashes:
        hint = " (for the input's language field: --lang-field lang)" if contract.LANG in clashes else ""
        listed = "; ".join(f"{column!r} ({' and '.join(who)})" for column, who in sorted(clashes.items()))
        raise UsageError(f"output columns clash: {listed}{hint}; rename the classifier (--model NAME=...) or "
                         "leave the field out of --keep-fields")
    checkpoints = checkpoint_ids(classifiers)
    metadata = {contract.CHECKPOINTS_METADATA_KEY: json.dumps(checkpoints)}
    for name, entry in checkpoints.items():
        checkpoint_key, revision_key = contract.checkpoint_metadata_keys(name)
        metadata[checkpoint_key], metadata[revision_key] = entry["checkpoint"], entry["revision"]
    if backend is not None:
        metadata[contract.BACKEND_METADATA_KEY] = backend["backend"]
        metadata[contract.PRECISION_METADATA_KEY] = backend["precision"]
    return pa.schema(fields, metadata=metadata)


def fill_date(template: str, date: str | None) -> str:
    if "{date}" in template and not date:
        raise UsageError(f"{template!r} contains {{date}}: pass --date YYYY-MM-DD")
    return template.replace("{date}", date) if date else template


def checkpoint_ids(classifiers: dict[str, Classifier]) -> dict[str, dict]:
    return {name: {"checkpoint": c.checkpoint.ref, "revision": c.checkpoint.revision}
            for name, c in classifiers.items()}


def warn_on_cleaning_mismatch(classifiers: dict[str, Classifier], cleaning: CleaningOptions) -> None:
    """Checkpoints trained by pipelines.train store the cleaning options they were trained with."""
    for name, classifier in classifiers.items():
        trained = load_config_dict(classifier.checkpoint.local_dir).get("label_corpus_cleaning")
        if trained is not None and CleaningOptions.from_dict(trained) != cleaning:
            LOG.warning("classifier %s was trained on text cleaned with %s, but this run cleans with %s; "
                        "pass --url-token/--mention-token to match", name,
                        CleaningOptions.from_dict(trained).describe(), cleaning.describe())


def counter_values(result) -> dict[tuple[str, str], int]:
    """Beam's counters of a run ((namespace, name) -> value): of a LabelResult's pipeline, or of
    a PipelineResult; none when nothing ran."""
    result = result.pipeline_result if isinstance(result, LabelResult) else result
    if result is None:
        return {}
    return {(c.key.metric.namespace, c.key.metric.name): c.committed
            for c in result.metrics().query()["counters"]}


def routing_manifest(routes) -> dict[str, str]:
    return {name: language.describe_routing(languages) for name, languages in routes.items()}


def base_manifest(config: "LabelConfig", paths, classifiers, run_id, started, runner, workers, routes) -> dict:
    """What the launcher knows; the commit step adds the counts, the times and the cost
    (partition.finish_manifest)."""
    return {
        "run_id": run_id, "input": config.input, "input_paths": paths, "output": config.output, "date": config.date,
        "checkpoints": checkpoint_ids(classifiers), "code_version": code_version(), "runner": runner,
        "started": started, "cost_per_hour_usd": config.cost_per_hour, "cost_workers": workers,
        "routing": routing_manifest(routes), "inference": backend_record(config.inference),
    }


def code_version() -> str:
    try:
        return importlib.metadata.version("social-corpus-labeling")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _our_error(exc: BaseException):
    """The commit step's own error inside a runner's wrapping, so the CLI can report it plainly."""
    ours = (partition.ReconciliationError, partition.ConcurrentRunError, partition.VerificationError)
    seen = exc
    while seen is not None:
        if isinstance(seen, ours):
            return seen
        for kind in ours:
            if f"{kind.__name__}: " in str(seen):
                return kind(str(seen).split(f"{kind.__name__}: ", 1)[1].split("\n")[0].strip(" '\""))
        seen = seen.__cause__ or seen.__context__
    return None


def expected_records(paths: list[str], limit_bytes: int = 2 << 30) -> int | None:
    """About how many records the inputs hold, for the progress estimate: Parquet footers, else
    lines of local files up to limit_bytes in all; None where that would cost a read of remote data,
    or where a file cannot be read."""

    try:
        return _expected_records(paths, limit_bytes)
    except Exception:  # noqa: BLE001 - only an estimate: a file it cannot read is the reader's to report
        return None


def _expected_records(paths: list[str], limit_bytes: int) -> int | None:
    import os
    import pyarrow.parquet as pq

    text_paths = [path for path in paths if input_format(path) != "parquet"]
    if any("://" in path for path in text_paths) or sum(map(os.path.getsize, text_paths)) > limit_bytes:
        return None
    total = 0
    for path in paths:
        if input_format(path) == "parquet":
            with FileSystems.open(path) as handle:
                total += pq.ParquetFile(handle).metadata.num_rows
            continue
        with FileSystems.open(path) as handle:
            lines = sum(1 for line in iter(handle.readline, b"") if line.strip())
        total += lines - (input_format(path) == "csv")
    return total


