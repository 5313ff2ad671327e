"""Label a corpus of posts with the four classifiers and write Parquet.

    python -m pipelines.label_corpus --input 'posts/*.jsonl' --output out/ \\
        [--models models.json] [--model politics=DIR ...] [--only politics,emotion] [Beam options]

Options and wiring only: the logic lives in transforms/ and models/.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from models.checkpoints import CheckpointError, ResolvedCheckpoint, resolve, validate
from models.handler import TextClassifierHandler
from models.heads import Head
from models.specs import CLASSIFIER_NAMES, SPECS
from transforms.beam_io import DEAD_LETTERS, Classify, CountRows, ReadRecordsFn, add_clean_text, shape_row
from transforms.cleaning import CleaningOptions
from transforms.records import DeadLetter, FieldMap, infer_kept_types, input_format, iter_file_records

LOG = logging.getLogger(__name__)
BASE_FIELDS = (pa.field("id", pa.string()), pa.field("text", pa.string()))
KEPT_TYPE_SAMPLE = 1000


class UsageError(ValueError):
    """A problem with the command line or the inputs, found before any data is labeled."""


@dataclass(frozen=True)
class Classifier:
    checkpoint: ResolvedCheckpoint
    head: Head


def parse_args(argv):
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
    parser.add_argument("--batch-size", type=int, default=256, help="texts per RunInference batch")
    parser.add_argument("--max-tokens-per-batch", type=int, default=None,
                        help="padded tokens per forward pass (default: 4096 on CPU, 65536 on CUDA)")
    parser.add_argument("--max-items-per-batch", type=int, default=None,
                        help="texts per forward pass (default: 64 on CPU, 1024 on CUDA)")
    parser.add_argument("--url-token", default=None, help="replace URLs with this token instead of removing them")
    parser.add_argument("--mention-token", default=None,
                        help="replace @mentions with this token (e.g. @user) instead of removing them")
    return parser.parse_known_args(argv)


def _csv_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def choose_checkpoints(args) -> dict[str, str]:
    """Classifier name -> checkpoint reference: published defaults, then --models, then --model."""
    refs = {name: spec.published_checkpoint for name, spec in SPECS.items()}
    if args.models:
        with FileSystems.open(args.models) as handle:
            refs.update(json.load(handle))
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
    checkpoints = {name: {"checkpoint": c.checkpoint.ref, "revision": c.checkpoint.revision}
                   for name, c in classifiers.items()}
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


def run(argv=None, test_pipeline=None):
    """Build and run the labeling pipeline; returns the PipelineResult."""
    args, beam_args = parse_args(argv)
    classifiers = load_classifiers(choose_checkpoints(args))  # before any data is read
    paths = match_inputs(args.input)
    keep_fields = _csv_list(args.keep_fields)
    fields = FieldMap(args.id_field, args.text_field, tuple(keep_fields))
    kept_types = kept_field_types(paths[0], keep_fields)
    schema = output_schema(kept_types, classifiers)
    cleaning = CleaningOptions(url_token=args.url_token, mention_token=args.mention_token)

    pipeline = test_pipeline or make_pipeline(beam_args)
    parsed = (
        pipeline
        | "MatchInput" >> fileio.MatchFiles(args.input)
        | "OpenFiles" >> fileio.ReadMatches()
        | "ReadRecords" >> beam.ParDo(ReadRecordsFn(fields, kept_types))
        .with_outputs(DEAD_LETTERS, main="records")
    )
    rows = parsed.records | "CleanText" >> beam.Map(add_clean_text, cleaning)
    dead_letters = [parsed[DEAD_LETTERS]]
    for name, classifier in classifiers.items():
        handler = TextClassifierHandler(
            classifier.checkpoint, device=args.device, batch_size=args.batch_size,
            max_tokens_per_batch=args.max_tokens_per_batch, max_items_per_batch=args.max_items_per_batch)
        labeled = rows | f"Classify_{name}" >> Classify(handler, classifier.head.null_columns())
        rows = labeled.rows
        dead_letters.append(labeled[DEAD_LETTERS])
    _ = (
        rows
        | "ShapeRows" >> beam.Map(shape_row, schema.names)
        | "CountRows" >> beam.ParDo(CountRows())
        | "WriteParquet" >> beam.io.WriteToParquet(
            FileSystems.join(args.output, "labels"), schema, codec="snappy", file_name_suffix=".parquet")
    )
    _ = dead_letters | "AllDeadLetters" >> beam.Flatten() | "WriteDeadLetters" >> beam.io.WriteToText(
        FileSystems.join(args.output, "_errors", "errors"), file_name_suffix=".jsonl")
    result = pipeline.run()
    result.wait_until_finish()
    return result


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        run(argv)
    except (CheckpointError, UsageError) as exc:
        print(f"label_corpus: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
