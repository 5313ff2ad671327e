"""Several dates in one run: `--dates FIRST..LAST` (every day, both ends included) or
`--dates D1,D2,...` (LabelConfig.dates in Python), with {date} in --input and --output.

Each date's partition is labeled in turn, exactly as a run of that date alone would label it (the
same preflight, pipeline, commit and manifest; --skip-if-done decides per date), in one process
that resolves the checkpoints once and loads the models once, when the first date with work needs
them (pipelines.labeling.SharedModels): a date skipped as done loads nothing. The models are
shared where the dates' pipelines run in this process (the DirectRunner in memory); worker
processes and remote runners load them in each date's own pipeline.

A date that fails (no input, a lost race, counts that do not look like success) is reported and
the next one starts; the run's exit status is the worst of the dates' (worst_exit). A stop signal
ends the run as it ends a run of one date (transforms.stopping: a commit under way finishes
first, nothing else of that date is committed), with a line naming the dates done.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from datetime import date, timedelta
from typing import Callable, Optional, Sequence

from models.checkpoints import CheckpointError
from pipelines import console
from pipelines.labeling import (DONE, FAILED, SKIPPED, SUSPECT, LabelConfig, LabelResult, SharedModels, SuspectRun,
                                UsageError, fill_date, label_one)
from transforms import partition, stopping

LOG = logging.getLogger("pipelines.label_corpus")
RANGE = ".."
EXAMPLE = "e.g. 2026-11-01..2026-11-30 or 2026-11-01,2026-11-08"
# Exit statuses from the best to the worst: success, written but suspect (3), not written or not
# committed (2), an unexpected error (1).
SEVERITY = (0, 3, 2, 1)


def parse_dates(spec: str) -> tuple[str, ...]:
    """'2026-11-01..2026-11-03' -> each day from the first to the last; '2026-11-01,2026-11-05' ->
    those, in that order. ValueError saying what is wrong and what is expected."""
    if RANGE in spec:
        first, _, last = spec.partition(RANGE)
        start, end = _day(first.strip(), spec), _day(last.strip(), spec)
        if start > end:
            raise ValueError(f"{spec!r}: the first date is after the last; give FIRST..LAST, {EXAMPLE}")
        return tuple((start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1))
    return checked_dates([part.strip() for part in spec.split(",") if part.strip()])


def checked_dates(dates: Sequence[str]) -> tuple[str, ...]:
    """Dates YYYY-MM-DD, each once, at least one; ValueError otherwise."""
    days = tuple(_day(value, ", ".join(map(str, dates))).isoformat() for value in dates)
    if not days:
        raise ValueError(f"no date given; {EXAMPLE}")
    repeated = sorted({day for day in days if days.count(day) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} given more than once; each date is one partition")
    return days


def _day(value, spec: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{value!r} in {spec!r} is not a date YYYY-MM-DD; {EXAMPLE}") from None


def check_templates(input_template: str, output_template: str, one_date: Optional[str]) -> None:
    """--dates fills {date} in --input and --output, one date at a time: both need it (else every
    date would read, or write, the same place), and --date cannot come with it."""
    if one_date:
        raise UsageError(f"--date {one_date} and --dates together: give one (--dates FIRST..LAST for several days)")
    missing = [flag for flag, template in (("--input", input_template), ("--output", output_template))
               if "{date}" not in template]
    if missing:
        raise UsageError(f"--dates needs {{date}} in {' and '.join(missing)}, where each date goes, e.g. "
                         f"--input 'posts/dt={{date}}/*.jsonl' --output 'labels/dt={{date}}'")


def worst_exit(results: Sequence[LabelResult]) -> int:
    return max((result.exit_code for result in results), key=SEVERITY.index, default=0)


def label_dates(config: LabelConfig, forward: Optional[Callable] = None, command_line: bool = False
                ) -> list[LabelResult]:
    """Each of config.dates labeled in turn (see the module's docstring): one LabelResult per
    date. UsageError or CheckpointError before any date when the run itself cannot work (bad
    dates, {date} missing, a checkpoint refused: every date would fail alike); Stopped after a
    stop signal, naming the dates done. command_line: problems name flags (else LabelConfig's fields)."""
    check_templates(config.input, config.output, config.date)
    try:  # a string is read as --dates reads it: FIRST..LAST or D1,D2,...
        dates = parse_dates(config.dates) if isinstance(config.dates, str) else checked_dates(config.dates)
    except ValueError as exc:
        raise UsageError(f"--dates: {exc}") from None
    words = (lambda message: message) if command_line else console.in_config_terms
    models = SharedModels(config.checkpoints)
    results: list[LabelResult] = []
    try:
        for number, day in enumerate(dates, 1):
            one = dataclasses.replace(config, input=fill_date(config.input, day), output=fill_date(config.output, day),
                                      date=day, dates=())
            LOG.info("date %s (%d/%d): %s -> %s", day, number, len(dates), one.input, one.output)
            started, before = time.monotonic(), partition.committed_run(one.output)
            try:
                result = _label_date(one, forward, models, words)
            except stopping.Stopped as stop:
                raise stopping.Stopped(stop.signum, stopped_line(str(stop), one.output, before, results,
                                                                 dates[number - 1:])) from None
            results.append(result)
            LOG.info("date %s (%d/%d): %s (%.0f s)", day, number, len(dates), outcome(result),
                     time.monotonic() - started)
    finally:
        models.release()
    for line in dates_table(results, worst_exit(results)):
        LOG.info("%s", line)
    return results


def _label_date(config: LabelConfig, forward: Optional[Callable], models: SharedModels,
                words: Callable[[str], str]) -> LabelResult:
    """One date's LabelResult; its failure is in the result (status and exit status), except a
    stop signal and a checkpoint refused (every date would fail alike), which end the run."""
    try:
        return label_one(config, None, forward, models)
    except (stopping.Stopped, CheckpointError):
        raise
    except SuspectRun as exc:
        return LabelResult.of_partition(config, SUSPECT, 3, problem=words(str(exc)))
    except (UsageError, partition.ConcurrentRunError, partition.ReconciliationError,
            partition.VerificationError) as exc:
        return LabelResult(config.output, FAILED, config.date, 2, problem=words(str(exc)))
    except Exception as exc:  # noqa: BLE001 - one date's crash is reported; the other dates go on
        LOG.warning("date %s failed", config.date, exc_info=True)
        return LabelResult(config.output, FAILED, config.date, 1,
                           problem=f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}")


def stopped_line(stop: str, output: str, committed_before: Optional[str], results: Sequence[LabelResult],
                 left: Sequence[str]) -> str:
    """The stop's own line (what state the current date's partition is in), then the dates done
    (complete: labeled or skipped as done, the current one if its commit finished before the stop)
    and those not done."""
    done = [result.date for result in results if result.status in (DONE, SKIPPED)]
    failed = [result.date for result in results if result.status not in (DONE, SKIPPED)]
    current = partition.read_manifest(output)
    if current is not None and current.get("run_id") != committed_before:
        done.append(left[0])
        left = left[1:]
    line = f"{stop}; dates done: {', '.join(done) or 'none'}"
    if failed:
        line += f"; failed: {', '.join(failed)}"
    return (line + f"; not done: {', '.join(left)}") if left else line


def outcome(result: LabelResult) -> str:
    """How one date ended, in a few words (its end line)."""
    if result.status == SKIPPED:
        return SKIPPED if result.rows is None else f"{SKIPPED} ({result.rows:,} rows committed before)"
    if result.exit_code:
        return f"{result.status} (exit {result.exit_code}): {result.problem}"
    if result.rows is None:
        return result.status
    carried = f", carried {', '.join(result.carried)}" if result.carried else ""
    return f"{result.status}: {result.rows:,} rows, ran {', '.join(result.ran) or 'none'}{carried}"


def dates_table(results: Sequence[LabelResult], exit_code: int) -> list[str]:
    """The run's summary: a line of totals, then one row per date with its rows, the classifiers
    it ran and carried, whether it was skipped as done, and its status."""
    header = ("date", "rows", "classifiers run", "carried", "skipped as done", "status")
    rows = [(r.date or r.output, "-" if r.rows is None else f"{r.rows:,}", ", ".join(r.ran) or "-",
             ", ".join(r.carried) or "-", "yes" if r.status == SKIPPED else "no",
             f"{r.status} (exit {r.exit_code})" if r.exit_code else r.status) for r in results]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    failed = sum(1 for r in results if r.exit_code)
    lines = [f"dates: {len(results)}, {len(results) - failed} complete, {failed} failed; exit status {exit_code}"]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in (header, *rows)]
    return lines
