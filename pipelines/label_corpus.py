"""Label a corpus of posts with the four classifiers and write Parquet.

    python -m pipelines.label_corpus --input 'posts/*.jsonl' --output out/ \\
        [--models models.json] [--model politics=DIR ...] [--only politics,emotion] [Beam options]

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
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone

import apache_beam as beam
import pyarrow as pa
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from models.checkpoints import CheckpointError, ResolvedCheckpoint, load_config_dict, resolve, validate
from models.handler import TextClassifierHandler, position_limit
from models.heads import Head
from models.specs import CLASSIFIER_NAMES, SPECS
from transforms.beam_io import DEAD_LETTERS, Classify, CountRows, ReadRecordsFn, add_clean_text, shape_row
from transforms import partition
from transforms.cleaning import CleaningOptions
from transforms.outcome import DEFAULT_MAX_DEAD_SHARE, run_problem
from transforms.records import DeadLetter, FieldMap, infer_kept_types, input_format, iter_file_records

LOG = logging.getLogger(__name__)
BASE_FIELDS = (pa.field("id", pa.string()), pa.field("text", pa.string()))
KEPT_TYPE_SAMPLE = 1000


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

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="file glob: .jsonl[.gz], .csv[.gz], .parquet; local, gs://, s3://")
    parser.add_argument("--output", required=True, help="output directory (local, gs://, s3://)")
    parser.add_argument("--models", help="JSON file mapping classifier name -> checkpoint")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="a checkpoint for one classifier: local dir, gs:// or s3:// prefix, or owner/name[@rev]")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(CLASSIFIER_NAMES)}")
    parser.add_argument("--id-field", default="id")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--keep-fields", default="", help="comma-separated input fields copied to the output")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
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
                        help="exit at once when the output partition has _SUCCESS with the same checkpoints")
    parser.add_argument("--url-token", default=None, help="replace URLs with this token instead of removing them")
    parser.add_argument("--allow-empty", action="store_true",
                        help="an input without records is a success (default: exit 3 with a message)")
    parser.add_argument("--max-dead-letter-share", type=_share, default=DEFAULT_MAX_DEAD_SHARE,
                        help="exit 3 (after writing the partition) when more than this share of the records "
                             f"read is dead-lettered (default {DEFAULT_MAX_DEAD_SHARE}; 1 turns the check off)")
    parser.add_argument("--mention-token", default=None,
                        help="replace @mentions with this token (e.g. @user) instead of removing them")
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
    only = _csv_list(args.only) or list(CLASSIFIER_NAMES)
    bad = [name for name in only if name not in SPECS]
    if bad:
        raise UsageError(f"--only names unknown classifier(s) {bad}; known: {list(CLASSIFIER_NAMES)}")
    return {name: refs[name] for name in CLASSIFIER_NAMES if name in only}


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
        raise UsageError(f"--keep-fields {clashes} clash with output columns")
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


def build_manifest(args, paths, classifiers, counters, found, started, runner) -> dict:
    read = counters.get(("label_corpus", "records_read"), 0)
    return {
        "input": args.input, "input_paths": paths, "output": args.output, "date": args.date,
        "records_read": read, **found,
        "empty_text_rows": counters.get(("label_corpus", "empty_text_rows"), 0),
        "inferences": {name: counters.get((f"classifier_{name}", "num_inferences"), 0) for name in classifiers},
        "checkpoints": checkpoint_ids(classifiers),
        "code_version": code_version(), "runner": runner,
        "started": started, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def code_version() -> str:
    try:
        return importlib.metadata.version("social-corpus-labeling")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def run(argv=None, test_pipeline=None):
    """Build and run the labeling pipeline for one partition; returns the PipelineResult,
    or None when --skip-if-done finds the partition complete with the same checkpoints."""
    args, beam_args = parse_args(argv)
    args.input, args.output = fill_date(args.input, args.date), fill_date(args.output, args.date)
    classifiers = load_classifiers(choose_checkpoints(args))  # before any data is read
    if args.skip_if_done:
        done = partition.read_manifest(args.output)
        if done and done.get("checkpoints") == checkpoint_ids(classifiers) and not done.get("problem"):
            LOG.info("%s is complete with the same checkpoints (--skip-if-done): nothing to do", args.output)
            return None
    paths = match_inputs(args.input)
    keep_fields = _csv_list(args.keep_fields)
    fields = FieldMap(args.id_field, args.text_field, tuple(keep_fields))
    kept_types = kept_field_types(paths[0], keep_fields)
    schema = output_schema(kept_types, classifiers)
    cleaning = CleaningOptions(url_token=args.url_token, mention_token=args.mention_token)
    warn_on_cleaning_mismatch(classifiers, cleaning)
    started = datetime.now(timezone.utc)
    staging = partition.join(args.output, f"_staging-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}")

    pipeline = test_pipeline or make_pipeline(beam_args)
    parsed = (
        pipeline
        | "MatchInput" >> fileio.MatchFiles(args.input)
        | "OpenFiles" >> fileio.ReadMatches()
        | "ReadRecords" >> beam.ParDo(ReadRecordsFn(fields, kept_types))
        .with_outputs(DEAD_LETTERS, main="records")
    )
    # Reshuffle: the records of one large input file are spread over workers for inference
    # instead of staying fused with the worker that read the file.
    max_tokens = max(position_limit(load_config_dict(c.checkpoint.local_dir)) for c in classifiers.values())
    rows = (parsed.records | "CleanText" >> beam.Map(add_clean_text, cleaning, max_tokens)
            | "Spread" >> beam.Reshuffle())
    dead_letters = [parsed[DEAD_LETTERS]]
    for name, classifier in classifiers.items():
        handler = TextClassifierHandler(
            classifier.checkpoint, device=args.device, batch_size=args.batch_size,
            max_tokens_per_batch=args.max_tokens_per_batch, max_items_per_batch=args.max_items_per_batch,
            sort_by_length=args.sort_by_length, cpu_dtype=args.cpu_dtype, quantize_int8=args.quantize_int8,
            cpu_threads=args.cpu_threads, length_buckets=args.length_buckets, model_copies=args.model_copies)
        labeled = rows | f"Classify_{name}" >> Classify(handler, classifier.head.null_columns())
        rows = labeled.rows
        dead_letters.append(labeled[DEAD_LETTERS])
    _ = (
        rows
        | "ShapeRows" >> beam.Map(shape_row, schema.names)
        | "CountRows" >> beam.ParDo(CountRows())
        | "WriteParquet" >> beam.io.WriteToParquet(
            partition.join(staging, partition.SHARD_PREFIX), schema, codec="snappy", file_name_suffix=".parquet",
            num_shards=args.num_shards)
    )
    _ = dead_letters | "AllDeadLetters" >> beam.Flatten() | "WriteDeadLetters" >> beam.io.WriteToText(
        partition.join(staging, partition.ERRORS_DIR, "errors"), file_name_suffix=".jsonl")
    result = pipeline.run()
    result.wait_until_finish()

    counters = counter_values(result)
    found = partition.count_outputs(staging)
    records_read = counters.get(("label_corpus", "records_read"), 0)
    partition.reconcile(records_read, found)
    problem = run_problem(records_read, found["rows_written"], found["dead_lettered_by_reason"],
                          found["files_broken_off"], args.allow_empty, args.max_dead_letter_share)
    runner = type(pipeline.runner).__name__
    manifest = build_manifest(args, paths, classifiers, counters, found, started.isoformat(), runner)
    partition.commit(staging, args.output, {**manifest, "problem": problem})
    LOG.info("wrote %s: %d rows, %d dead-lettered", args.output, found["rows_written"], found["dead_lettered"])
    if problem:
        raise SuspectRun(f"{args.output} was written, but {problem}")
    return result


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        run(argv)
    except (CheckpointError, UsageError, partition.ReconciliationError) as exc:
        print(f"label_corpus: {exc}", file=sys.stderr)
        return 2
    except SuspectRun as exc:
        print(f"label_corpus: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
