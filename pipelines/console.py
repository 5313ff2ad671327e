"""What the entrypoints print: the project's own log lines (progress, summary), and none of the
third-party noise (Beam's import warnings, transformers' load reports and bars) unless -v.

Import this module before apache_beam: Beam logs a warning through the root logger on import,
which would otherwise configure the root logger before main() can.
"""
from __future__ import annotations

import logging
import os
import re
import sys
from contextlib import contextmanager
from typing import Collection, Optional

from transforms import contract

OWN_LOGGERS = ("pipelines", "transforms", "models.training")  # models.classifier's load lines only with -v
NOISE = ("apitools not found",  # warnings Beam prints on import, whatever the command, and each
         "No semi_persistent_directory found")  # worker process (multi_processing) as it starts
# The PortableRunner's copies of its job's messages (the embedded job service's log, its workers'
# lines, and the job messages the launcher relays on the root logger from this thread): a job's
# failure reaches the launcher as the exception it raises, which the command line reports.
JOB_RELAY_LOGGERS = ("apache_beam.runners.portability.local_job_service",)
JOB_RELAY_THREADS = ("wait_until_finish_read",)


def wants_verbose(argv) -> bool:
    return any(arg in ("-v", "--verbose") for arg in argv or ())


def prog(module_form: str, script: str) -> str:
    """The command as it was typed, for usage lines: the console script (setup.py) when that is
    what runs, else `python -m ...`."""
    return script if os.path.basename(sys.argv[0] or "") == script else module_form


class _DropNoise(logging.Filter):
    verbose = wants_verbose(sys.argv[1:])

    def filter(self, record: logging.LogRecord) -> bool:
        return self.verbose or not (any(text in record.getMessage() for text in NOISE)
                                    or record.name in JOB_RELAY_LOGGERS or record.threadName in JOB_RELAY_THREADS)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def _install_root_handler() -> None:
    root = logging.getLogger()
    if not root.handlers:  # so that Beam's import-time warning does not call basicConfig
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_DropNoise())
        root.addHandler(handler)


_install_root_handler()


def _own_handler() -> logging.Handler:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    return handler


def setup(verbose: bool = False) -> None:
    """Our loggers print INFO lines to stderr; everyone else's only warnings (all of it with -v)."""
    _own_loggers(verbose)
    logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)


def setup_worker(verbose: bool = False) -> None:
    """In a worker process of the DirectRunner's multi_processing mode (pipelines/sdk_worker.py),
    before Beam is imported: our loggers print to stderr (the launcher's) as in the launcher, and
    nothing else does. Beam's harness sends the rest of the process's log records to the
    launcher, which shows them by its own rules (warnings; all of it with -v); a handler that
    drops them here keeps Beam's import-time warning from configuring a stderr handler of its own
    (logging.basicConfig), which printed every INFO line of the worker."""
    logging.getLogger().handlers[:] = [logging.NullHandler()]
    _own_loggers(verbose)


def is_verbose() -> bool:
    """Whether -v is on (setup(verbose=True), or -v on this process's command line)."""
    return _DropNoise.verbose


def _own_loggers(verbose: bool) -> None:
    _DropNoise.verbose = verbose
    handler = _own_handler()
    for name in OWN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    if not verbose:
        _silence_libraries()


def _silence_libraries() -> None:
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    disable_progress_bars()


def verbose() -> bool:
    """Whether -v asked for everyone's messages (setup(verbose=True), or -v on this process's command line)."""
    return _DropNoise.verbose


@contextmanager
def quiet_libraries():
    """For a call from Python (pipelines.labeling.label): transformers' and the hub's messages and
    bars ("Loading weights") hidden as the command line hides them, and as they were afterwards."""
    import transformers
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars

    verbosity = transformers.utils.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    hub_bars = not are_progress_bars_disabled()
    _silence_libraries()
    try:
        yield
    finally:
        transformers.utils.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()
        if hub_bars:
            enable_progress_bars()


@contextmanager
def showing_progress():
    """For a call from Python: our progress and summary lines on stderr, as the command line
    prints them, while inside; loggers that already have a handler (console.setup ran, or the
    caller configured them) are left as they are."""
    handler, changed = _own_handler(), []
    for name in OWN_LOGGERS:
        logger = logging.getLogger(name)
        if logger.handlers:
            continue
        changed.append((logger, logger.level, logger.propagate))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, level, propagate in changed:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def interactive() -> bool:
    """Whether someone is watching: stderr is a terminal, or this runs in a Jupyter kernel."""
    try:
        if sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):  # replaced or closed stderr
        pass
    return "ipykernel" in sys.modules


# What a message names on the command line -> what a caller of pipelines.labeling.label sets in
# LabelConfig instead (the flags of transforms/outcome.py's hints, pipelines/labeling.py's
# checks and models/checkpoints.py's hint).
CONFIG_TERMS = (
    (r"--model ([\w.-]+)=([^\s;,)]+)", r"checkpoints={'\1': '\2'}"),
    (r"--models?\b", "checkpoints"),
    (r"--text-field", "fields.text_field"),
    (r"--id-field", "fields.id_field"),
    (r"--keep-fields", "fields.keep_fields"),
    (r"--lang-field", "lang_field"),
    (r"--allow-empty", "allow_empty=True"),
    (r"--max-dead-letter-share", "max_dead_share"),
    (r"--max-tokens-per-batch", "inference.max_tokens_per_batch"),
    (r"--max-items-per-batch", "inference.max_items_per_batch"),
    (r"--skip-if-done", "skip_if_done"),
    (r"--no-reuse", "no_reuse"),
    (r"--input", "input"),
    (r"--output", "output"),
    (r"--dates", "dates"),
    (r"--date", "date"),
)


def in_config_terms(message: str) -> str:
    """A message written for the command line, with LabelConfig's fields where it names flags:
    'check --text-field' -> 'check fields.text_field'."""
    for flag, term in CONFIG_TERMS:
        message = re.sub(rf"(?<![\w-]){flag}(?![\w-])", term, message)
    return message


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%"


def label_line(classifier: str, shares: list[tuple[str, float]], top: int = 8) -> str:
    """'stars: 5 41.0% · 1 22.1% · ...': a classifier's labels by share, most common first."""
    ranked = sorted(shares, key=lambda item: -item[1])
    text = " · ".join(f"{label} {_percent(share)}" for label, share in ranked[:top])
    more = f" · (+{len(ranked) - top} more)" if len(ranked) > top else ""
    return f"{classifier}: {text or 'no labels'}{more}"


def label_lines(output: str, max_rows: int = 2_000_000, only: Optional[Collection[str]] = None) -> list[str]:
    """One line per classifier (of `only`, when given) with its labels' distribution, read back from
    the written partition (each classifier's shares as its report hooks count them: a multi-label
    one's, the share of rows carrying each label). With pyarrow alone (pipelines.label_shares): the
    job runs where polars and matplotlib are not installed."""
    from pipelines.label_shares import TooManyRows, label_shares, read_label_columns

    if only is not None and not only:
        return []
    try:
        table, names, classifiers = read_label_columns(output, max_rows)
    except FileNotFoundError:
        return []
    except TooManyRows as many:
        return [f"labels: {many.rows:,} rows; run python -m pipelines.report {output} for their distribution"]
    shares = label_shares(table, names, classifiers)
    return [label_line(classifier, [(label, share) for label, _, share in part])
            for classifier, part in shares.items() if only is None or classifier in only]


def reuse_lines(manifest: dict) -> list[str]:
    """What --skip-if-done reused and what ran (transforms.reuse), from the manifest."""
    work = manifest.get("reuse")
    if not work or work.get("full"):
        return [f"reuse: none ({work['reason']})"] if work else []
    lines = [f"reuse: {work['reason']}"]
    for name, entry in (manifest.get("provenance") or {}).items():
        earlier = [run for run in entry["runs"] if run != manifest.get("run_id")]
        carried = (f"{entry['carried']:,} carried from run{'s' if len(earlier) > 1 else ''} {', '.join(earlier)}"
                   if entry["carried"] else "none carried")
        lines.append(f"  {name}: model ran on {entry['inferences']:,} posts, {carried}")
    lines += [f"  {name}: dropped (not named in this run)" for name in work.get("dropped") or []]
    return lines


def summary_lines(manifest: dict, seconds: float, labels: list[str]) -> list[str]:
    """The end-of-run summary, from the manifest the run committed."""
    rows, dead = manifest.get("rows_written", 0), manifest.get("dead_lettered", 0)
    read = manifest.get("records_read", rows + dead)
    lines = [f"done: {read:,} posts read, {rows:,} rows written, {dead:,} dead-lettered in {seconds:.0f} s "
             f"({read / max(seconds, 1e-9):,.1f} posts/s)"]
    for reason, n in (manifest.get("dead_lettered_by_reason") or {}).items():
        lines.append(f"  dead letters: {n:,} {reason}")
    for broken in manifest.get("files_broken_off") or []:
        lines.append(f"  file broken off: {broken['source']}: {broken['reason']}")
    empty = manifest.get(contract.EMPTY_TEXT_ROWS) or 0
    if empty:  # in no classifier's labeled or skipped count below
        lines.append(f"  {empty:,} row{'s' if empty != 1 else ''} with an empty text after cleaning: no classifier "
                     f"runs on {'them' if empty != 1 else 'it'}")
    languages = manifest.get("languages") or {}
    if languages:
        total = sum(languages.values())
        ranked = sorted(languages.items(), key=lambda item: -item[1])
        lines.append("languages: " + " · ".join(f"{code} {_percent(n / total)}" for code, n in ranked[:8]))
    for name, counts in (manifest.get("by_classifier") or {}).items():
        lines.append(f"{name} [{(manifest.get('routing') or {}).get(name, '')}]: {counts['labeled']:,} posts "
                     f"labeled, {counts['skipped_language']:,} skipped by language")
    lines += reuse_lines(manifest)
    lines += labels
    lines.append(f"output: {manifest.get('output')}")
    return lines


GERUNDS = {"read": "reading", "labeled": "labeling"}
MIN_PACE_SECONDS = 20.0  # a time left only once the pace is measured over this long (and over min_posts posts)


def time_left(expected: int | None, done: float, pace_posts: float, pace_seconds: float,
              min_posts: float = 0) -> float | None:
    """Seconds left of about `expected` posts, `done` of them done, at the pace of `pace_posts` in
    `pace_seconds` (measured since the step's first batch finished, so model loading is left out).
    None without `expected`, or until that pace covers at least `min_posts` posts (the labeling
    step passes a whole batch: its sub-batches run shortest first, so part of one runs fast) and
    MIN_PACE_SECONDS: a guess from the first few posts was off by 20x."""
    if not expected or pace_posts < max(min_posts, 1) or pace_seconds < MIN_PACE_SECONDS:
        return None
    return max(expected - done, 0) / (pace_posts / pace_seconds)


def progress_line(done: float, seconds: float, *, verb: str = "labeled", pace: tuple[float, float] | None = None,
                  expected: int | None = None, min_posts: float = 0, workers: int = 1, pid: int | None = None) -> str:
    """'12,000 posts labeled in 60 s (240.0 posts/s since labeling began), about 33 s left of ~20,000':
    what one worker process has `verb`, `seconds` since the run's launch; `pace` (posts, seconds)
    is this step's own since its first batch finished (default: done in seconds), and the time
    left comes from it (time_left). With several worker processes each counts only its own posts,
    and which share of the input is its is unknown: its line says whose count it is and gives no
    time left."""
    pace_posts, pace_seconds = pace if pace is not None else (done, seconds)
    since = f" since {GERUNDS.get(verb, verb)} began" if pace is not None else ""
    line = f"{done:,.0f} posts {verb} in {seconds:.0f} s ({pace_posts / max(pace_seconds, 1e-9):,.1f} posts/s{since})"
    if workers != 1:  # 0: a remote runner's processes, how many is not known here
        whose = f"one of {workers} worker processes" if workers > 1 else "one worker process"
        return f"{whose} (pid {pid}): {line}"
    left = time_left(expected, done, pace_posts, pace_seconds, min_posts)
    return line if left is None else f"{line}, about {left:.0f} s left of ~{expected:,}"
