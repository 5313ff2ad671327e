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

OWN_LOGGERS = ("pipelines", "transforms", "models.training")  # models.classifier's load lines only with -v
NOISE = ("apitools not found",)  # warnings Beam prints on import, whatever the command


def wants_verbose(argv) -> bool:
    return any(arg in ("-v", "--verbose") for arg in argv or ())


def prog(module_form: str, script: str) -> str:
    """The command as it was typed, for usage lines: the console script (setup.py) when that is
    what runs, else `python -m ...`."""
    return script if os.path.basename(sys.argv[0] or "") == script else module_form


class _DropNoise(logging.Filter):
    verbose = wants_verbose(sys.argv[1:])

    def filter(self, record: logging.LogRecord) -> bool:
        return self.verbose or not any(text in record.getMessage() for text in NOISE)


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
    _DropNoise.verbose = verbose
    handler = _own_handler()
    for name in OWN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)
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


def label_lines(output: str, max_rows: int = 2_000_000) -> list[str]:
    """One line per classifier with its labels' distribution, read back from the written partition
    (each classifier's shares as its report hooks count them: a multi-label one's, the share of rows
    carrying each label). With pyarrow alone (pipelines.label_shares): the job runs where polars and
    matplotlib are not installed."""
    from pipelines.label_shares import TooManyRows, label_shares, read_label_columns

    try:
        table, names, classifiers = read_label_columns(output, max_rows)
    except FileNotFoundError:
        return []
    except TooManyRows as many:
        return [f"labels: {many.rows:,} rows; run python -m pipelines.report {output} for their distribution"]
    return [label_line(classifier, [(label, share) for label, _, share in part])
            for classifier, part in label_shares(table, names, classifiers).items()]


def reuse_lines(manifest: dict) -> list[str]:
    """What --skip-if-done reused and what ran (transforms.reuse), from the manifest."""
    work = manifest.get("reuse")
    if not work or work.get("full"):
        return [f"reuse: none ({work['reason']})"] if work else []
    lines = [f"reuse: {work['reason']}"]
    for name, entry in (manifest.get("provenance") or {}).items():
        lines.append(f"  {name}: model ran on {entry['inferences']:,} posts, {entry['carried']:,} carried "
                     f"from run(s) {', '.join(r for r in entry['runs'] if r != manifest.get('run_id')) or '-'}")
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
