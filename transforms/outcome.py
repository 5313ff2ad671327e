"""Whether a finished run's counts look like success: a pure function of the counts, so it can
run wherever they are known (today after the pipeline, in pipelines/label_corpus.run).

A run is suspect, and the job ends with a non-zero exit after writing and accounting for what
it read, when
- no record was read at all (an empty input, or only files that broke off), unless allow_empty;
- records were read but none became a row (all dead-lettered: usually the wrong --text-field,
  or not the format the file name says);
- more than max_dead_share of the records read were dead-lettered (default 0.5).
"""
from __future__ import annotations

from typing import Mapping, Sequence

DEFAULT_MAX_DEAD_SHARE = 0.5

# The likely fix for the commonest reasons (reason kinds are the text before the first ':').
HINTS = (
    ("no '", "check --text-field (and --id-field): the records have no such field"),
    ("' is ", "check --text-field: that field is not a string in these records"),
    ("invalid JSON", "the input must be JSON Lines: one JSON object per line"),
    ("invalid UTF-8", "the input must be encoded as UTF-8"),
    ("record is a JSON", "the input must be JSON Lines whose lines are objects"),
    ("CSV", "check the CSV's header and quoting (one header line, cells quoted with \")"),
    ("kept field", "check --keep-fields: a kept field's values do not share one type"),
    ("out of memory", "lower --max-tokens-per-batch / --max-items-per-batch"),
    ("inference failed", "see the reasons in _errors/: a classifier fails on these texts"),
)


def hint_for(reason: str) -> str:
    for start, hint in HINTS:
        if start in reason:
            return hint
    return "see the reasons in _errors/"


def run_problem(records_read: int, rows_written: int, dead_by_reason: Mapping[str, int],
                broken_files: Sequence[Mapping] = (), allow_empty: bool = False,
                max_dead_share: float = DEFAULT_MAX_DEAD_SHARE) -> str | None:
    """A one-paragraph message naming the main reason and the likely fix, or None if the run
    looks like what it should be."""
    if records_read == 0:
        if allow_empty:
            return None
        broken = f"; {len(broken_files)} file(s) broke off: {broken_files[0].get('reason')}" if broken_files else ""
        return (f"the input holds no records{broken} (pass --allow-empty if an empty partition "
                f"is expected)")
    dead = sum(dead_by_reason.values())
    if dead <= max_dead_share * records_read:  # all dead (no rows) passes only a share of 1
        return None
    reason, count = max(dead_by_reason.items(), key=lambda item: item[1]) if dead_by_reason else ("?", 0)
    if rows_written == 0:
        opening = f"no record could be used: all {records_read} records read were dead-lettered"
    else:
        opening = (f"{dead} of {records_read} records read ({dead / records_read:.0%}) were dead-lettered, "
                   f"more than --max-dead-letter-share {max_dead_share:g}")
    return f"{opening}; most often {reason!r} ({count}): {hint_for(reason)}"
