"""Label a corpus of posts with the four classifiers and write Parquet.

    python -m pipelines.label_corpus --input 'posts/*.jsonl' --output out/ \\
        [--models models.json] [--model politics=DIR ...] [--only politics,emotion] [Beam options]

The four published classifiers are in every run --only does not narrow: each that --models/--model
do not point elsewhere loads its published checkpoint from the Hugging Face hub (network needed);
a --model of your own adds to them (--only NAME: it alone). `python -m pipelines.demo` runs
offline. Each classifier runs only on posts in its languages and their script (politics: en,ms;
stars: zh; sentiment, emotion: en; an undetermined language runs those whose script fits);
--languages changes that per classifier, --all-languages turns it off. Every argument is checked before anything is read or loaded
(pipelines/flags.py): one that is neither ours nor a Beam pipeline option is an error.
Output columns, routing and the checkpoint contract: docs/ in the repository.

Exit status: 0 success; 2 a problem found before any data is labeled (command line, --models,
checkpoints, inputs without the text field, workers that cannot run the job's code) or counts that do not reconcile; 3 the partition was written and accounted but does
not look like success (no records, none usable, or more than --max-dead-letter-share of them
dead-lettered: see transforms/outcome.py), with a message naming the main reason and the fix;
143 / 130 stopped by SIGTERM / SIGINT, with a line saying what state the partition is in (a commit
under way finishes first; nothing else of the run is committed, and its staging is deleted).
With --dates: the worst of the dates' (1, then 2, then 3, then 0), after a line per date and a summary
table; a stop names the dates done.

The command line only: it turns argv into a LabelConfig and calls pipelines.labeling.label.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from datetime import date

from pipelines import console  # first: it keeps Beam's import-time warnings off the terminal
from apache_beam.io.filesystems import FileSystems

from models.checkpoints import CheckpointError
from models.batching import DEFAULT_MAX_ITEMS, DEFAULT_MAX_TOKENS
from models.classifier import CPU_BACKENDS, CPU_PRECISIONS, InferenceOptions
from models.classifiers import PUBLISHED, PUBLISHED_NAMES, name_problem, prefix_problems
from pipelines import dates, flags
from pipelines.labeling import LabelConfig, SuspectRun, UsageError, WorkerProblem, fill_date, label, use_stores
from pipelines.runner import WORKER_START_TIMEOUT_S
from transforms import language, partition, stopping
from transforms.cleaning import CleaningOptions
from transforms.records import ACCEPTED_SUFFIXES, FieldMap

LOG = logging.getLogger("pipelines.label_corpus")  # not __main__ under python -m
OFFLINE_HINT = ("label_corpus: no network? `python -m pipelines.demo --output out/demo` trains and runs small "
                "classifiers offline; `python -m models.tiny_checkpoints out/checkpoints` builds random-weight ones "
                "for --models out/checkpoints/models.json")


def defaults(cls) -> dict:
    """A dataclass's field defaults by name (those without one left out): the command line's
    defaults are the configuration's, said once there."""
    return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}


def parse_args(argv):
    """(our options, Beam's options) of a command line; UsageError for what is neither, or out of
    range (pipelines/flags.py)."""
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    flags.unknown_arguments(beam_args, [o for action in parser._actions for o in action.option_strings])
    return args, beam_args


def build_parser() -> argparse.ArgumentParser:
    def _int_list(value: str) -> list[int]:
        try:
            numbers = [int(part) for part in _csv_list(value)]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of integers") from exc
        if not numbers or any(n <= 0 for n in numbers):
            raise argparse.ArgumentTypeError(f"{value!r}: give positive integers")
        return sorted(numbers)

    config, inference = defaults(LabelConfig), InferenceOptions()
    fields, cleaning = config["fields"], config["cleaning"]
    parser = flags.ArgumentParser(prog=console.prog("python -m pipelines.label_corpus", "label-corpus"),
                                  description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help=f"file glob: {ACCEPTED_SUFFIXES}; local, gs://, s3://")
    parser.add_argument("--output", required=True, help="output directory (local, gs://, s3://)")
    parser.add_argument("--models", help="JSON file mapping classifier name -> checkpoint (default for each: its "
                                         "published checkpoint on the Hugging Face hub, which needs network)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="a checkpoint for one classifier: local dir, gs:// or s3:// prefix, or owner/name[@rev]; "
                             "a classifier not named here or in --models loads its published hub checkpoint; a NAME "
                             f"other than {', '.join(PUBLISHED_NAMES)} adds a classifier defined by its checkpoint "
                             "(columns NAME and NAME_score, or NAME_<label> when it is multi-label)")
    parser.add_argument("--only", help=f"comma-separated subset of the run's classifiers ({','.join(PUBLISHED_NAMES)} "
                                       "and those --model adds)")
    parser.add_argument("--id-field", default=fields.id_field,
                        help=f"input field holding the post's id (default {fields.id_field}; missing ids become a "
                             "hash of the text)")
    parser.add_argument("--text-field", default=fields.text_field,
                        help=f"input field holding the post's text (default {fields.text_field})")
    parser.add_argument("--lang-field", default=config["lang_field"],
                        help="input field holding the post's language (ISO 639-1, e.g. en, zh-CN); posts without "
                             "a usable value, or all posts when this is not given, are detected offline")
    parser.add_argument("--languages", action="append", default=[], metavar="NAME=CODES",
                        help="languages one classifier runs on, e.g. politics=en,ms,id or stars='*' (every "
                             "language); default: " + "; ".join(
                                 f"{n}={language.describe(c.languages)}" for n, c in PUBLISHED.items())
                             + "; any other classifier: what its checkpoint's config.json names as "
                               "label_corpus_languages, else every language")
    parser.add_argument("--all-languages", action="store_true",
                        help="run every classifier on every post, whatever its language")
    parser.add_argument("--keep-fields", default=",".join(fields.keep_fields),
                        help="comma-separated input fields copied to the output")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=inference.device,
                        help=f"where the models run (default {inference.device}"
                             f"{': CUDA when a GPU is visible, else CPU' if inference.device == 'auto' else ''})")
    parser.add_argument("--batch-size", type=flags.integer(1), default=inference.batch_size,
                        help="texts per RunInference batch, sorted by length within it "
                             f"(default {inference.batch_size})")
    parser.add_argument("--max-tokens-per-batch", type=flags.integer(1), default=inference.max_tokens_per_batch,
                        help="padded tokens per forward pass (default: "
                             f"{DEFAULT_MAX_TOKENS['cpu']} on CPU, {DEFAULT_MAX_TOKENS['cuda']} on CUDA)")
    parser.add_argument("--max-items-per-batch", type=flags.integer(1), default=inference.max_items_per_batch,
                        help=f"texts per forward pass (default: {DEFAULT_MAX_ITEMS['cpu']} on CPU, "
                             f"{DEFAULT_MAX_ITEMS['cuda']} on CUDA)")
    parser.add_argument("--no-sort", dest="sort_by_length", action="store_false", default=inference.sort_by_length,
                        help="run each batch in arrival order instead of sorted by token length (slower; "
                             "for comparisons)")
    parser.add_argument("--cpu-backend", choices=CPU_BACKENDS, default=inference.cpu_backend,
                        help="on CPU: what runs the models (default openvino: the fastest whose labels agree with "
                             "torch fp32's on >= 99.5%% of posts, benchmarks/README.md); torch is the reference")
    parser.add_argument("--cpu-precision", choices=CPU_PRECISIONS, default=inference.cpu_precision,
                        help="on CPU: fp32, bf16 (scores move slightly) or int8 (more; openvino's needs a model "
                             "built once with `python -m models.export`). Default fp32: bf16, twice as fast, kept "
                             "only 99.35%% of one classifier's labels (benchmarks/README.md). CUDA always uses "
                             "bf16/fp16 autocast")
    parser.add_argument("--cpu-dtype", action=flags.renamed("--cpu-backend torch --cpu-precision {value}"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--quantize-int8", nargs=0, action=flags.renamed("--cpu-backend torch --cpu-precision int8"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--cpu-threads", type=flags.integer(1), default=inference.cpu_threads,
                        help="torch threads per worker process on CPU (default: the cores it may run on)")
    parser.add_argument("--length-buckets", type=_int_list, default=list(inference.length_buckets), metavar="N,N,...",
                        help="character-length boundaries for Beam's length-bucketed batching "
                             "(batch_length_fn/batch_bucket_boundaries), e.g. 64,128,256,512")
    parser.add_argument("--model-copies", type=flags.integer(1), default=inference.model_copies,
                        help="on CUDA: model copies per machine, shared by its worker processes (default 1)")
    parser.add_argument("--num-shards", type=flags.integer(0), default=config["num_shards"],
                        help="Parquet files to write (0: the runner decides)")
    parser.add_argument("--date", help="YYYY-MM-DD: fills {date} in --input and --output", type=_iso_date)
    parser.add_argument("--dates", type=_date_list, default=config["dates"], metavar="FIRST..LAST|D1,D2,...",
                        help="several dates, each filling {date} in --input and --output in turn: every day from "
                             "FIRST to LAST (both included), or the dates listed; one partition per date, committed "
                             "on its own, the models loaded once; a date that fails is reported and the others go "
                             "on (exit status: the worst of the dates')")
    parser.add_argument("--skip-if-done", action="store_true", default=config["skip_if_done"],
                        help="do only the work the committed partition lacks: exit at once (no model loaded) when "
                             "its checkpoints, routing and input files are the same; else run only the new or "
                             "changed classifiers and label only posts it has not labeled, carrying the rest")
    parser.add_argument("--no-reuse", action="store_true", default=config["no_reuse"],
                        help="with --skip-if-done: when there is work to do, relabel every post with every "
                             "classifier instead of carrying committed columns over")
    parser.add_argument("--no-wait", dest="wait", action="store_false", default=config["wait"],
                        help="return once the job is submitted; the job commits the partition itself (the "
                             "DirectRunner runs the job in this process: it returns when the job is done)")
    parser.add_argument("--cost-per-hour", type=flags.decimal(0), default=config["cost_per_hour"], metavar="USD",
                        help="price of one worker per hour: the manifest then states the partition's cost "
                             "and cost per million posts (workers: --max_num_workers or --num_workers, else 1)")
    parser.add_argument("--url-token", default=cleaning.url_token,
                        help="replace URLs with this token instead of removing them")
    parser.add_argument("--allow-empty", action="store_true", default=config["allow_empty"],
                        help="an input without records is a success (default: exit 3 with a message)")
    parser.add_argument("--max-dead-letter-share", type=flags.decimal(0, 1), default=config["max_dead_share"],
                        help="exit 3 (after writing the partition) when more than this share of the records "
                             f"read is dead-lettered (default {config['max_dead_share']}; 1 turns the check off)")
    parser.add_argument("--mention-token", default=cleaning.mention_token,
                        help="replace @mentions with this token (e.g. @user) instead of removing them")
    parser.add_argument("--progress-every", type=flags.decimal(0), default=config["progress_every"], metavar="SECONDS",
                        help=f"seconds between progress lines (default {config['progress_every']:g}; 0: a line "
                             "at every count, each post read and each sub-batch labeled; each worker process prints "
                             "its own)")
    parser.add_argument("--worker-start-timeout", type=flags.decimal(0), default=config["worker_start_timeout"],
                        metavar="S", help="end the job (exit 2, nothing committed) when none of its workers has "
                                          f"started S seconds after it was submitted (default: {WORKER_START_TIMEOUT_S}"
                                          " with --runner PortableRunner --job_endpoint embed, else none; 0: none)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show Beam's, transformers' and the hub's own messages (hidden by default)")
    return parser


def _iso_date(value: str) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date YYYY-MM-DD") from exc


def _date_list(value: str) -> tuple[str, ...]:
    try:
        return dates.parse_dates(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _csv_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def choose_checkpoints(args) -> dict[str, str]:
    """Classifier name -> checkpoint reference, in run order (the published four, then the others
    as named): published defaults, then --models, then --model; --only keeps a subset."""
    refs = {name: classifier.published_checkpoint for name, classifier in PUBLISHED.items()}
    if args.models:
        refs.update(read_models_file(args.models))
    for item in args.model:
        name, sep, ref = item.partition("=")
        if not sep or not name.strip() or not ref.strip():
            raise UsageError(f"--model {item!r}: expected NAME=CHECKPOINT")
        refs[name.strip()] = ref.strip()
    problems = [problem for problem in map(name_problem, refs) if problem]
    if problems:
        raise UsageError("; ".join(problems))
    only = _csv_list(args.only) or list(refs)
    bad = [name for name in only if name not in refs]
    if bad:
        raise UsageError(f"--only names classifier(s) {', '.join(bad)} that this run does not have; "
                         f"it has: {', '.join(refs)}")
    chosen = {name: ref for name, ref in refs.items() if name in only}
    problems = prefix_problems(chosen)
    if problems:
        raise UsageError("; ".join(problems))
    return chosen


def choose_languages(args, names) -> dict[str, frozenset[str] | None]:
    """Classifier name -> the languages it runs on (None: every language): a published classifier's
    own, then --languages NAME=CODES; --all-languages makes every one None. A classifier left out
    takes its checkpoint's default when the run starts (models.classifiers.base.Classifier.languages_for)."""
    routes = {name: PUBLISHED[name].languages for name in names if name in PUBLISHED}
    for item in args.languages:
        name, sep, codes = item.partition("=")
        name = name.strip()
        if not sep or (name not in PUBLISHED and name not in names):
            raise UsageError(f"--languages {item!r}: expected NAME=CODES with NAME one of the run's classifiers "
                             f"({', '.join(sorted(set(PUBLISHED) | set(names)))})")
        try:
            languages = language.parse_languages(codes)
        except ValueError as exc:
            raise UsageError(f"--languages {item!r}: {exc}") from exc
        if name in names:
            routes[name] = languages
    return {name: None for name in names} if args.all_languages else routes


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
                         f'e.g. {{"toxicity": "/path/to/checkpoint"}}')
    return models


def config_from_argv(argv=None) -> LabelConfig:
    """The command line as a LabelConfig (UsageError for what does not fit)."""
    args, beam_args = parse_args(argv)
    if args.dates:
        dates.check_templates(args.input, args.output, args.date)
    else:
        flags.check_date(args.input, args.output, args.date)
    days = args.dates or [args.date]
    # before the first read of a store (a run's dates share their buckets: the first date's paths name them)
    use_stores(beam_args, [fill_date(args.input, days[0]), fill_date(args.output, days[0]), args.models])
    problem = flags.environment_problem(beam_args)
    for day in days:
        problem = problem or flags.output_problem(fill_date(args.output, day), fill_date(args.input, day),
                                                  flags.is_existing_file)
    if problem:
        raise UsageError(problem)
    # With --dates, {date} stays in --input and --output: each date fills it in turn (pipelines/dates.py).
    input_pattern, output = (args.input, args.output) if args.dates else (fill_date(args.input, args.date),
                                                                          fill_date(args.output, args.date))
    refs = choose_checkpoints(args)
    use_stores(beam_args, refs.values())
    return LabelConfig(
        input=input_pattern, output=output, checkpoints=refs,
        routes=choose_languages(args, refs),
        fields=FieldMap(args.id_field, args.text_field, tuple(_csv_list(args.keep_fields))), lang_field=args.lang_field,
        inference=InferenceOptions(
            device=args.device, batch_size=args.batch_size, max_tokens_per_batch=args.max_tokens_per_batch,
            max_items_per_batch=args.max_items_per_batch, sort_by_length=args.sort_by_length,
            cpu_backend=args.cpu_backend, cpu_precision=args.cpu_precision, cpu_threads=args.cpu_threads,
            length_buckets=tuple(args.length_buckets), model_copies=args.model_copies),
        cleaning=CleaningOptions(url_token=args.url_token, mention_token=args.mention_token),
        num_shards=args.num_shards, date=args.date, skip_if_done=args.skip_if_done, no_reuse=args.no_reuse,
        wait=args.wait,
        cost_per_hour=args.cost_per_hour, allow_empty=args.allow_empty, max_dead_share=args.max_dead_letter_share,
        progress_every=args.progress_every,
        worker_start_timeout=args.worker_start_timeout, beam_args=tuple(beam_args), dates=args.dates)


def unfetched_hint(checkpoints: dict[str, str], unfetched: tuple[str, ...]) -> str:
    """The line after checkpoints that could not be fetched. Where published checkpoints the run took
    by default failed and the run has checkpoints of the user's own: that the four are in every run
    --only does not narrow, and the --only for the user's own alone. Else: the offline demo."""
    def by_default(name: str) -> bool:
        return name in PUBLISHED and checkpoints[name] == PUBLISHED[name].published_checkpoint

    defaults = [name for name in unfetched if by_default(name)]
    own = [name for name in checkpoints if not by_default(name)]
    if not defaults or not own:
        return OFFLINE_HINT
    verb = "is" if len(defaults) == 1 else "are"
    return (f"label_corpus: {', '.join(defaults)} {verb} in every run that --only does not narrow (published "
            f"checkpoints, from the Hugging Face hub); for yours alone: --only {','.join(own)}")


def run(argv=None, test_pipeline=None, forward=None):
    """The command line's run: label(config_from_argv(argv)) with the flags' words in its messages;
    its LabelResult (with --dates, one per date)."""
    return label(config_from_argv(argv), test_pipeline, forward, command_line=True)


def main(argv=None) -> int:
    console.setup(verbose=console.wants_verbose(sys.argv[1:] if argv is None else argv))
    with stopping.handled():
        return _main(argv)


def _main(argv) -> int:
    config = None
    try:
        config = config_from_argv(argv)
        result = label(config, command_line=True)
    except stopping.Stopped as exc:  # SIGTERM, SIGINT: label() says what state the partition is in
        print(f"label_corpus: {exc}", file=sys.stderr)
        return exc.exit_code
    except (CheckpointError, UsageError, WorkerProblem, partition.ReconciliationError, partition.ConcurrentRunError,
            partition.VerificationError) as exc:
        print(f"label_corpus: {exc}", file=sys.stderr)
        if isinstance(exc, CheckpointError) and exc.unfetched:
            print(unfetched_hint(config.checkpoints, exc.unfetched), file=sys.stderr)
        return 2
    except SuspectRun as exc:
        print(f"label_corpus: {exc}", file=sys.stderr)
        return 3
    return dates.worst_exit(result) if isinstance(result, list) else 0


def cli() -> None:
    """The console script: main(), and after a stop or a failed run an exit at once (everything
    is settled by then; the interpreter's own shutdown of torch, Beam and the tokenizers takes
    seconds more, and a job whose worker never started leaves Beam's job thread waiting for it)."""
    code = main()
    if code != 0:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    cli()
