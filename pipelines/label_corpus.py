"""Label a corpus of posts with the four classifiers and write Parquet.

    python -m pipelines.label_corpus --input 'posts/*.jsonl' --output out/ \\
        [--models models.json] [--model politics=DIR ...] [--only politics,emotion] [Beam options]

Without --models/--model each classifier loads its published checkpoint from the Hugging Face
hub (network needed); `python -m pipelines.demo` runs offline. Each classifier runs only on
posts in its languages (politics: en,ms; stars: zh; sentiment, emotion: en; an undetermined
language runs them all); --languages changes that per classifier, --all-languages turns it off.
Output columns, routing and the checkpoint contract: docs/ in the repository.

Exit status: 0 success; 2 a problem found before any data is labeled (command line, --models,
checkpoints) or counts that do not reconcile; 3 the partition was written and accounted but does
not look like success (no records, none usable, or more than --max-dead-letter-share of them
dead-lettered: see transforms/outcome.py), with a message naming the main reason and the fix.

Options and wiring only: the logic lives in transforms/ and models/.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import itertools
import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone

from pipelines import console  # first: it keeps Beam's import-time warnings off the terminal
import apache_beam as beam
import pyarrow as pa
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, WorkerOptions

from models.checkpoints import CheckpointError, ResolvedCheckpoint, load_config_dict, resolve, validate
from models.classifier import InferenceOptions
from models.handler import Classify, ClassifiersHandler
from models.runtime import position_limit
from models.heads import Head
from models.specs import CLASSIFIER_NAMES, SPECS
from transforms.beam_io import (COUNTS, DEAD_LETTERS, CommitPartition, CountAs, PrepareFn, ProgressFn,
                                ReadRecordsFn, ToTableFn, is_record_letter)
from transforms import language, partition
from transforms.cleaning import CleaningOptions
from transforms.outcome import DEFAULT_MAX_DEAD_SHARE
from transforms.records import DeadLetter, FieldMap, infer_kept_types, input_format, iter_file_records

LOG = logging.getLogger("pipelines.label_corpus")  # not __main__ under python -m
BASE_FIELDS = (pa.field("id", pa.string()), pa.field("text", pa.string()), pa.field("lang", pa.string()))
KEPT_TYPE_SAMPLE = 1000
OFFLINE_HINT = ("label_corpus: no network? `python -m pipelines.demo --output out/demo` trains and runs small "
                "classifiers offline; `python -m models.tiny_checkpoints out/checkpoints` builds random-weight ones "
                "for --models out/checkpoints/models.json")


class UsageError(ValueError):
    """A problem with the command line or the inputs, found before any data is labeled."""


class SuspectRun(RuntimeError):
    """The run finished and its partition was written and accounted, but its counts do not look
    like success (transforms.outcome.run_problem); the message names the reason and the fix."""


@dataclass(frozen=True)
class Classifier:
    checkpoint: ResolvedCheckpoint
    head: Head


def parse_args(argv):
    def _int_list(value: str) -> list[int]:
        try:
            numbers = [int(part) for part in _csv_list(value)]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of integers") from exc
        if not numbers or any(n <= 0 for n in numbers):
            raise argparse.ArgumentTypeError(f"{value!r}: give positive integers")
        return sorted(numbers)

    parser = argparse.ArgumentParser(prog="python -m pipelines.label_corpus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="file glob: .jsonl[.gz], .csv[.gz], .parquet; local, gs://, s3://")
    parser.add_argument("--output", required=True, help="output directory (local, gs://, s3://)")
    parser.add_argument("--models", help="JSON file mapping classifier name -> checkpoint (default for each: its "
                                         "published checkpoint on the Hugging Face hub, which needs network)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="a checkpoint for one classifier: local dir, gs:// or s3:// prefix, or owner/name[@rev]; "
                             "a classifier not named here or in --models loads its published hub checkpoint")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(CLASSIFIER_NAMES)}")
    parser.add_argument("--id-field", default="id",
                        help="input field holding the post's id (default id; missing ids become a hash of the text)")
    parser.add_argument("--text-field", default="text", help="input field holding the post's text (default text)")
    parser.add_argument("--lang-field", default=None,
                        help="input field holding the post's language (ISO 639-1, e.g. en, zh-CN); posts without "
                             "a usable value, or all posts when this is not given, are detected offline")
    parser.add_argument("--languages", action="append", default=[], metavar="NAME=CODES",
                        help="languages one classifier runs on, e.g. politics=en,ms,id or stars='*' (every "
                             "language); default: " + "; ".join(
                                 f"{n}={language.describe(s.languages)}" for n, s in SPECS.items()))
    parser.add_argument("--all-languages", action="store_true",
                        help="run every classifier on every post, whatever its language")
    parser.add_argument("--keep-fields", default="", help="comma-separated input fields copied to the output")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the models run (default auto: CUDA when a GPU is visible, else CPU)")
    parser.add_argument("--batch-size", type=int, default=1024,
                        help="texts per RunInference batch, sorted by length within it (default 1024)")
    parser.add_argument("--max-tokens-per-batch", type=int, default=None,
                        help="padded tokens per forward pass (default: 8192 on CPU, 65536 on CUDA)")
    parser.add_argument("--max-items-per-batch", type=int, default=None,
                        help="texts per forward pass (default: 256 on CPU, 1024 on CUDA)")
    parser.add_argument("--no-sort", dest="sort_by_length", action="store_false",
                        help="run each batch in arrival order instead of sorted by token length (slower; "
                             "for comparisons)")
    parser.add_argument("--cpu-dtype", choices=("fp32", "bf16"), default="fp32",
                        help="on CPU: bf16 runs under bf16 autocast (faster where the CPU has bf16 "
                             "instructions; scores move slightly). CUDA always uses bf16/fp16 autocast")
    parser.add_argument("--quantize-int8", action="store_true",
                        help="on CPU: dynamic int8 quantization of the linear layers (scores move slightly)")
    parser.add_argument("--cpu-threads", type=int, default=None,
                        help="torch threads per worker process on CPU (default: the cores it may run on)")
    parser.add_argument("--length-buckets", type=_int_list, default=None, metavar="N,N,...",
                        help="character-length boundaries for Beam's length-bucketed batching "
                             "(batch_length_fn/batch_bucket_boundaries), e.g. 64,128,256,512")
    parser.add_argument("--model-copies", type=int, default=None,
                        help="on CUDA: model copies per machine, shared by its worker processes (default 1)")
    parser.add_argument("--num-shards", type=int, default=0, help="Parquet files to write (0: the runner decides)")
    parser.add_argument("--date", help="YYYY-MM-DD: fills {date} in --input and --output", type=_iso_date)
    parser.add_argument("--skip-if-done", action="store_true",
                        help="exit at once when the output partition has _SUCCESS with the same checkpoints "
                             "and language routing")
    parser.add_argument("--no-wait", dest="wait", action="store_false",
                        help="return once the job is submitted; the job commits the partition itself")
    parser.add_argument("--cost-per-hour", type=float, default=None, metavar="USD",
                        help="price of one worker per hour: the manifest then states the partition's cost "
                             "and cost per million posts (workers: --max_num_workers or --num_workers, else 1)")
    parser.add_argument("--url-token", default=None, help="replace URLs with this token instead of removing them")
    parser.add_argument("--allow-empty", action="store_true",
                        help="an input without records is a success (default: exit 3 with a message)")
    parser.add_argument("--max-dead-letter-share", type=_share, default=DEFAULT_MAX_DEAD_SHARE,
                        help="exit 3 (after writing the partition) when more than this share of the records "
                             f"read is dead-lettered (default {DEFAULT_MAX_DEAD_SHARE}; 1 turns the check off)")
    parser.add_argument("--mention-token", default=None,
                        help="replace @mentions with this token (e.g. @user) instead of removing them")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show Beam's, transformers' and the hub's own messages (hidden by default)")
    return parser.parse_known_args(argv)


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a share between 0 and 1")
    return share


def _iso_date(value: str) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date YYYY-MM-DD") from exc


def _csv_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def choose_checkpoints(args) -> dict[str, str]:
    """Classifier name -> checkpoint reference: published defaults, then --models, then --model."""
    refs = {name: spec.published_checkpoint for name, spec in SPECS.items()}
    if args.models:
        refs.update(read_models_file(args.models))
    for item in args.model:
        name, sep, ref = item.partition("=")
        if not sep or not ref:
            raise UsageError(f"--model {item!r}: expected NAME=CHECKPOINT")
        refs[name.strip()] = ref.strip()
    unknown = sorted(set(refs) - set(SPECS))
    if unknown:
        raise UsageError(f"unknown classifier(s) {unknown}; known: {list(CLASSIFIER_NAMES)}")
    only = _csv_list(args.only) or list(SPECS)
    bad = [name for name in only if name not in SPECS]
    if bad:
        raise UsageError(f"--only names unknown classifier(s) {bad}; known: {list(CLASSIFIER_NAMES)}")
    return {name: refs[name] for name in SPECS if name in only}


def choose_languages(args, names) -> dict[str, frozenset[str] | None]:
    """Classifier name -> the languages it runs on (None: every language): its spec's, then
    --languages NAME=CODES; --all-languages makes every one None."""
    routes = {name: SPECS[name].languages for name in names}
    for item in args.languages:
        name, sep, codes = item.partition("=")
        name = name.strip()
        if not sep or name not in SPECS:
            raise UsageError(f"--languages {item!r}: expected NAME=CODES with NAME one of {list(CLASSIFIER_NAMES)}")
        try:
            languages = language.parse_languages(codes)
        except ValueError as exc:
            raise UsageError(f"--languages {item!r}: {exc}") from exc
        if name in routes:
            routes[name] = languages
    return {name: None for name in routes} if args.all_languages else routes


def read_models_file(path: str) -> dict[str, str]:
    """--models: a JSON object of classifier name -> checkpoint; any problem is one UsageError line."""
    try:
        with FileSystems.open(path) as handle:
            models = json.loads(handle.read().decode("utf-8"))
    except Exception as exc:  # noqa: BLE001 - missing, unreadable, not UTF-8, not JSON: one line each
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise UsageError(f"--models {path!r} cannot be read as JSON ({type(exc).__name__}: {detail})") from exc
    if not isinstance(models, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in models.items()):
        raise UsageError(f"--models {path!r} must be a JSON object mapping classifier names to checkpoints, "
                         f'e.g. {{"sentiment": "/path/to/checkpoint"}}')
    return models


def load_classifiers(refs: dict[str, str]) -> dict[str, Classifier]:
    """Resolve and validate every checkpoint; all problems are reported together."""
    classifiers, problems = {}, []
    for name, ref in refs.items():
        try:
            checkpoint = resolve(name, ref)
            classifiers[name] = Classifier(checkpoint, validate(checkpoint))
        except CheckpointError as exc:
            problems.append(str(exc))
    if problems:
        raise CheckpointError("\n".join(problems))
    return classifiers


def match_inputs(pattern: str) -> list[str]:
    paths = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    if not paths:
        raise UsageError(f"--input {pattern!r} matches no files")
    for path in paths:
        try:
            input_format(path)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    return sorted(paths)


def kept_field_types(first_path: str, keep_fields: list[str]) -> dict[str, pa.DataType]:
    """Column types of kept fields: the Parquet schema's, or inferred from the first records."""
    if not keep_fields:
        return {}
    if input_format(first_path) == "parquet":
        import pyarrow.parquet as pq

        with FileSystems.open(first_path) as handle:
            schema = pq.ParquetFile(handle).schema_arrow
        return {name: (schema.field(name).type if name in schema.names else pa.string()) for name in keep_fields}
    with FileSystems.open(first_path) as handle:
        items = itertools.islice(iter_file_records(first_path, handle), KEPT_TYPE_SAMPLE)
        sample = [item[1] for item in items if not isinstance(item, DeadLetter)]
    return infer_kept_types(sample, keep_fields)


def output_schema(kept_types: dict[str, pa.DataType], classifiers: dict[str, Classifier]) -> pa.Schema:
    fields = [*BASE_FIELDS]
    fields += [pa.field(name, kept_types[name]) for name in kept_types]
    fields.append(pa.field("clean_text", pa.string()))
    for classifier in classifiers.values():
        fields += classifier.head.fields
    names = [f.name for f in fields]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        hint = " (for the input's language field: --lang-field lang)" if "lang" in clashes else ""
        raise UsageError(f"--keep-fields {clashes} clash with output columns{hint}")
    checkpoints = checkpoint_ids(classifiers)
    metadata = {"label_corpus.checkpoints": json.dumps(checkpoints)}
    for name, entry in checkpoints.items():
        metadata[f"label_corpus.{name}.checkpoint"] = entry["checkpoint"]
        metadata[f"label_corpus.{name}.revision"] = entry["revision"]
    return pa.schema(fields, metadata=metadata)


def make_pipeline(beam_args: list[str]) -> beam.Pipeline:
    """A Beam pipeline for the given options. The DirectRunner (the default) runs on Beam's
    FnApiRunner, in memory or with --direct_num_workers processes; we skip its attempt to
    download the Prism runner, which fails on machines without internet access."""
    options = PipelineOptions(beam_args)
    runner = options.view_as(StandardOptions).runner
    if runner in (None, "DirectRunner", "direct"):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return beam.Pipeline(runner=FnApiRunner(), options=options)
    return beam.Pipeline(options=options)


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
                        "pass --url-token/--mention-token to match", name, trained, cleaning.to_dict())


def counter_values(result) -> dict[tuple[str, str], int]:
    return {(c.key.metric.namespace, c.key.metric.name): c.committed
            for c in result.metrics().query()["counters"]}


def routing_manifest(routes) -> dict[str, str]:
    return {name: language.describe(languages) for name, languages in routes.items()}


def base_manifest(args, paths, classifiers, run_id, started, runner, workers, routes) -> dict:
    """What the launcher knows; the commit step adds the counts, the times and the cost
    (partition.finish_manifest)."""
    return {
        "run_id": run_id, "input": args.input, "input_paths": paths, "output": args.output, "date": args.date,
        "checkpoints": checkpoint_ids(classifiers), "code_version": code_version(), "runner": runner,
        "started": started, "cost_per_hour_usd": args.cost_per_hour, "cost_workers": workers,
        "routing": routing_manifest(routes),
    }


def cost_workers(beam_args: list[str]) -> int:
    """Workers the cost is charged for: Dataflow's --max_num_workers (an upper bound under
    autoscaling) or --num_workers; one machine for the DirectRunner."""
    options = PipelineOptions(beam_args)
    if "Dataflow" not in str(options.view_as(StandardOptions).runner):
        return 1
    workers = options.view_as(WorkerOptions)
    return workers.max_num_workers or workers.num_workers or 1


def code_version() -> str:
    try:
        return importlib.metadata.version("social-corpus-labeling")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def inference_options(args) -> InferenceOptions:
    return InferenceOptions(
        device=args.device, batch_size=args.batch_size, max_tokens_per_batch=args.max_tokens_per_batch,
        max_items_per_batch=args.max_items_per_batch, sort_by_length=args.sort_by_length, cpu_dtype=args.cpu_dtype,
        quantize_int8=args.quantize_int8, cpu_threads=args.cpu_threads, length_buckets=tuple(args.length_buckets or ()),
        model_copies=args.model_copies)


def run(argv=None, test_pipeline=None, forward=None):
    """Build and run the labeling pipeline for one partition; returns the PipelineResult,
    or None when --skip-if-done finds the partition complete with the same checkpoints."""
    args, beam_args = parse_args(argv)
    args.input, args.output = fill_date(args.input, args.date), fill_date(args.output, args.date)
    refs = choose_checkpoints(args)
    routes = choose_languages(args, refs)
    classifiers = load_classifiers(refs)  # before any data is read
    if args.skip_if_done:
        done = partition.read_manifest(args.output)
        if done is None:
            LOG.info("--skip-if-done: %s has no complete run (no _SUCCESS): labeling it", args.output)
        elif done.get("checkpoints") != checkpoint_ids(classifiers):
            LOG.info("--skip-if-done: %s was labeled with other checkpoints: labeling it again", args.output)
        elif done.get("routing", {name: "all languages" for name in routes}) != routing_manifest(routes):
            LOG.info("--skip-if-done: %s was labeled with other language routing: labeling it again", args.output)
        elif done.get("problem"):
            LOG.info("--skip-if-done: %s was flagged (%s): labeling it again", args.output, done["problem"])
        else:
            LOG.info("skipped: %s is already complete (_SUCCESS at %s, %s rows) with the same checkpoints "
                     "(--skip-if-done)", args.output, done.get("finished"), done.get("rows_written"))
            return None
    paths = match_inputs(args.input)
    keep_fields = _csv_list(args.keep_fields)
    fields = FieldMap(args.id_field, args.text_field, tuple(keep_fields))
    kept_types = kept_field_types(paths[0], keep_fields)
    schema = output_schema(kept_types, classifiers)
    cleaning = CleaningOptions(url_token=args.url_token, mention_token=args.mention_token)
    warn_on_cleaning_mismatch(classifiers, cleaning)
    started, clock = datetime.now(timezone.utc), time.monotonic()
    run_id = partition.new_run_id(started, uuid.uuid4().hex[:8])
    staging = partition.staging_dir(args.output, run_id)
    base_run = partition.committed_run(args.output)  # another run committing after this is a race we lose
    expected = expected_records(paths)
    LOG.info("labeling %s (%s) -> %s with %s", args.input,
             f"{len(paths)} file(s), about {expected:,} posts" if expected else f"{len(paths)} file(s)",
             args.output, ", ".join(f"{n} [{language.describe(routes[n])}]" for n in classifiers))

    pipeline = test_pipeline or make_pipeline(beam_args)
    parsed = (
        pipeline
        | "MatchInput" >> fileio.MatchFiles(args.input)
        | "OpenFiles" >> fileio.ReadMatches()
        | "ReadRecords" >> beam.ParDo(ReadRecordsFn(fields, kept_types, args.lang_field))
        .with_outputs(DEAD_LETTERS, main="records")
    )
    counts = [parsed.records | "CountRecords" >> CountAs("records_read"),
              parsed[DEAD_LETTERS] | "RecordLetters" >> beam.Filter(is_record_letter)
              | "CountRecordLetters" >> CountAs("records_read")]
    # Reshuffle: the records of one large input file are spread over workers for inference
    # instead of staying fused with the worker that read the file.
    max_tokens = max(position_limit(load_config_dict(c.checkpoint.local_dir)) for c in classifiers.values())
    read_progress = ProgressFn(expected, workers_of(beam_args), verb="read")
    rows = (parsed.records | "Prepare" >> beam.ParDo(PrepareFn(cleaning, max_tokens, read_progress))
            | "Spread" >> beam.Reshuffle())
    handler = ClassifiersHandler({name: c.checkpoint for name, c in classifiers.items()}, routes,
                                 inference_options(args), forward)
    labeled = rows | "Classify" >> Classify(handler)
    rows = labeled.rows
    counts.append(labeled[COUNTS])
    dead_letters = [parsed[DEAD_LETTERS], labeled[DEAD_LETTERS]]
    tables = rows | "ToArrow" >> beam.ParDo(ToTableFn(schema)).with_outputs(COUNTS, main="tables")
    counts += [tables[COUNTS], pipeline | "NoEmptyText" >> beam.Create([("empty_text_rows", 0)])]
    shards = (tables.tables | "Progress" >> beam.ParDo(ProgressFn(expected, workers_of(beam_args), batched=True))
              | "WriteParquet" >> beam.io.WriteToParquetBatched(
        partition.join(staging, partition.SHARD_PREFIX), schema, codec="snappy", file_name_suffix=".parquet",
        num_shards=args.num_shards))
    letters = dead_letters | "AllDeadLetters" >> beam.Flatten() | "WriteDeadLetters" >> beam.io.WriteToText(
        partition.join(staging, partition.ERRORS_DIR, "errors"), file_name_suffix=".jsonl")
    runner = type(pipeline.runner).__name__
    totals = counts | "AllCounts" >> beam.Flatten() | "SumCounts" >> beam.CombinePerKey(sum)
    manifest = base_manifest(args, paths, classifiers, run_id, started.isoformat(), runner,
                             cost_workers(beam_args), routes)
    _ = (shards, letters, totals) | "CommitPartition" >> CommitPartition(
        staging, args.output, manifest, base_run, routes,
        outcome_limits={"allow_empty": args.allow_empty, "max_dead_share": args.max_dead_letter_share})
    result = pipeline.run()
    if not args.wait:
        LOG.info("submitted; the job commits %s itself (_SUCCESS when complete)", args.output)
        return result
    try:
        result.wait_until_finish()
    except Exception as exc:
        raise _our_error(exc) or exc
    done = partition.read_manifest(args.output)
    if done and done.get("run_id") == run_id:
        for line in console.summary_lines(done, time.monotonic() - clock, console.label_lines(args.output)):
            LOG.info("%s", line)
        if done.get("problem"):
            raise SuspectRun(f"{args.output} was written, but {done['problem']}")
    return result


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


def workers_of(beam_args: list[str]) -> int:
    """Worker processes the DirectRunner runs (for the progress estimate); 1 when not said."""
    for i, arg in enumerate(beam_args):
        if arg.startswith("--direct_num_workers"):
            value = arg.partition("=")[2] or (beam_args[i + 1] if i + 1 < len(beam_args) else "1")
            return max(int(value), 1) if value.isdigit() else 1
    return 1


def expected_records(paths: list[str], limit_bytes: int = 2 << 30) -> int | None:
    """About how many records the inputs hold, for the progress estimate: Parquet footers, else
    lines of local files up to limit_bytes in all; None where that would cost a read of remote data."""
    import os
    import pyarrow.parquet as pq

    total = 0
    for path in paths:
        if input_format(path) == "parquet":
            with FileSystems.open(path) as handle:
                total += pq.ParquetFile(handle).metadata.num_rows
            continue
        if "://" in path or os.path.getsize(path) > limit_bytes:
            return None
        with FileSystems.open(path) as handle:
            lines = sum(1 for line in iter(handle.readline, b"") if line.strip())
        total += lines - (input_format(path) == "csv")
    return total


def main(argv=None) -> int:
    console.setup(verbose=console.wants_verbose(sys.argv[1:] if argv is None else argv))
    try:
        run(argv)
    except (CheckpointError, UsageError, partition.ReconciliationError, partition.ConcurrentRunError,
            partition.VerificationError) as exc:
        print(f"label_corpus: {exc}", file=sys.stderr)
        if isinstance(exc, CheckpointError) and "could not be fetched" in str(exc):
            print(OFFLINE_HINT, file=sys.stderr)
        return 2
    except SuspectRun as exc:
        print(f"label_corpus: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
