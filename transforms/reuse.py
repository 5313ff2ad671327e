"""--skip-if-done: do only the work that is not done on a committed partition.

A classifier's columns for a row are a function of the row's cleaned text and language, the
classifier's checkpoint revision, its routing and the backend and precision its model ran at; the cleaned text and the language are functions
of the record's text (and language field) under the run's field mapping and cleaning options.
So against the committed partition (its manifest records all of these):

- When what makes a row (`row_options`: fields, language field, cleaning, the cleaned text's
  token cap, kept fields' types) differs, nothing can be carried: a full relabel.
- A classifier whose revision, routing or backend and precision differs, or that the partition lacks, runs on every row
  (`rerun`); one the run no longer names is dropped (its columns are not written).
- Every other classifier (`carried`) keeps its committed values, bit for bit, on each row whose
  cleaned text and language the committed partition holds; it runs only on rows it does not (late
  posts, posts of a changed file). Rows of files no longer matched are not read, so not written.
- When nothing differs, the inputs included (each file's size and version, the files that could
  not be read), there is nothing to do: the run exits before loading any model weights.

The input files are read again in every run that does work (reading is cheap beside the models),
and carried values are matched to rows by content in a shuffle (a CoGroupByKey on the cleaned
text). So the partition written equals, row for row, what a fresh full run writes: the same rows
and dead letters, carried values identical, recomputed ones as a fresh run computes them.

Pure functions (plan, the carry of one group) with thin Beam glue (AttachCarried).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence

import apache_beam as beam

from transforms import contract

CARRY_KEY = "__carried__"  # a row's carried columns (lang -> {column: value}) until inference takes them


@dataclass(frozen=True)
class ReusePlan:
    """What a run does against the committed partition (see the module's docstring)."""

    full: bool  # nothing is carried
    reason: str  # why, in words (the summary prints it)
    carried: tuple[str, ...] = ()
    rerun: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    inputs_changed: bool = True

    @property
    def nothing_to_do(self) -> bool:
        return not self.full and not self.rerun and not self.dropped and not self.inputs_changed

    def to_manifest(self) -> dict:
        return {"full": self.full, "reason": self.reason, "carried": list(self.carried), "rerun": list(self.rerun),
                "dropped": list(self.dropped), "inputs_changed": self.inputs_changed}


def row_options(fields, lang_field, cleaning, max_tokens: int, kept_types: Mapping) -> dict:
    """What makes a row from a record besides its content (JSON-like, as the manifest records it):
    the field mapping, the language field, the cleaning options, the cleaned text's token cap (the
    longest of the run's checkpoints) and the kept fields' column types."""
    options = {"fields": {"id": fields.id_field, "text": fields.text_field, "keep": list(fields.keep_fields)},
               "lang_field": lang_field, "cleaning": cleaning.to_dict(), "clean_text_max_tokens": max_tokens,
               "kept_types": {name: str(kind) for name, kind in kept_types.items()}}
    return json.loads(json.dumps(options))  # as a manifest reads back (tuples become lists)


# What ran the models of a run whose manifest does not say (before the manifest's `inference`):
# torch at fp32, the default then.
OLD_BACKEND = {"backend": "torch", "precision": "fp32"}


def classifier_identity(revision: str, routing: str, backend: Mapping = OLD_BACKEND) -> dict:
    """What a classifier's columns depend on besides the row: its checkpoint, its routing and what
    ran its model (backend and precision: transforms to scores that differ slightly)."""
    return {"revision": revision, "routing": routing, "backend": f"{backend['backend']} {backend['precision']}"}


def committed_identities(manifest: Mapping) -> dict[str, dict]:
    """Classifier name -> identity, as a committed manifest records them."""
    routing = manifest.get("routing") or {}
    backend = manifest.get("inference") or OLD_BACKEND
    return {name: classifier_identity(entry.get("revision"), routing.get(name, "all languages"), backend)
            for name, entry in (manifest.get("checkpoints") or {}).items()}


def plan(previous: Optional[Mapping], identities: Mapping[str, dict], row_options: Mapping,
         inputs: Mapping, reuse: bool = True) -> ReusePlan:
    """The work of a run whose classifiers have `identities` (name -> classifier_identity, in run
    order), whose rows are made with `row_options` from `inputs` (the manifest's record of the
    listing), against `previous`, the committed partition's manifest (None: there is none)."""
    everything = tuple(identities)
    if previous is None:
        return ReusePlan(True, "no complete run (no _SUCCESS) to reuse", rerun=everything)
    if previous.get("problem"):
        return ReusePlan(True, f"the committed partition was flagged ({previous['problem']})", rerun=everything)
    made = previous.get("row_options")
    if made != dict(row_options):
        what = "no record of how its rows were made" if not isinstance(made, dict) else "other " + ", ".join(sorted(
            key for key in set(row_options) | set(made) if made.get(key) != row_options.get(key)))
        return ReusePlan(True, f"its rows were made differently ({what}): every row is made again", rerun=everything)
    inputs_changed = previous.get("inputs") != dict(inputs)
    done = committed_identities(previous)
    if not reuse:
        if not inputs_changed and done == dict(identities):
            return ReusePlan(False, "same checkpoints, routing and inputs", inputs_changed=False)
        return ReusePlan(True, "--no-reuse: every classifier runs on every row", rerun=everything)
    rerun = tuple(name for name in everything if done.get(name) != identities[name])
    carried = tuple(name for name in everything if name not in rerun)
    dropped = tuple(name for name in done if name not in identities)
    reason = "same checkpoints, routing and inputs" if not (rerun or dropped or inputs_changed) else \
        "; ".join(part for part in (
            "runs " + ", ".join(f"{name} ({_why(done.get(name), identities[name])})" for name in rerun) if rerun else "",
            f"carries {', '.join(carried)}" if carried else "",
            f"drops {', '.join(dropped)}" if dropped else "",
            "labels posts it has not labeled (inputs changed)" if inputs_changed and carried else "") if part)
    return ReusePlan(False, reason, carried, rerun, dropped, inputs_changed)


def _why(done: Optional[Mapping], wanted: Mapping) -> str:
    if done is None:
        return "not in the partition"
    if done.get("revision") != wanted.get("revision"):
        return "another checkpoint"
    if done.get("backend") != wanted.get("backend"):
        return f"{wanted.get('backend')} instead of {done.get('backend')}"
    return "other language routing"


def carry_group(new_rows: Iterable[dict], committed: Iterable[tuple[str, dict]]) -> list[dict]:
    """The rows of one cleaned text, each with the committed columns of that text by language
    (CARRY_KEY; the first committed row of each language: the same text and language gives the
    same columns). Rows whose text was not committed are returned as they are."""
    by_lang: dict[str, dict] = {}
    for lang, columns in committed:
        by_lang.setdefault(lang, columns)
    rows = list(new_rows)
    if by_lang:
        for row in rows:
            row[CARRY_KEY] = by_lang
    return rows


def take_carried(row: dict) -> Optional[dict]:
    """The carried columns for the row's language (popped from the row), or None."""
    carried = row.pop(CARRY_KEY, None)
    return carried.get(row.get(contract.LANG)) if carried else None


def committed_entry(row: Mapping, columns: Sequence[str]) -> tuple[str, tuple[str, dict]]:
    """A committed row -> (its cleaned text, (its language, the carried columns))."""
    return row[contract.CLEAN_TEXT], (row[contract.LANG], {name: row.get(name) for name in columns})


def provenance(previous: Optional[Mapping], counts: Mapping[str, int], run_id: str, names: Sequence[str]) -> dict:
    """Per classifier: the runs whose models computed its columns, the rows its model ran on in
    this run (inferences) and the rows whose values it carried."""
    before = (previous or {}).get("provenance") or {}
    result = {}
    for name in names:
        inferences, carried = counts.get(contract.inferences_key(name), 0), counts.get(contract.carried_key(name), 0)
        earlier = before.get(name, {}).get("runs") or ([previous["run_id"]] if previous else [])
        runs = (list(earlier) if carried else []) + ([run_id] if inferences or not carried else [])
        result[name] = {"runs": list(dict.fromkeys(runs)), "inferences": inferences, "carried": carried}
    return result


# ------------------------------------------------------------------------------- Beam glue


class AttachCarried(beam.PTransform):
    """Rows -> the same rows, those whose cleaned text the committed partition holds carrying its
    columns of the carried classifiers (`columns`), read from the committed `shards`. Rows without
    cleaned text (nothing to label) go around the shuffle."""

    def __init__(self, shards: Sequence[str], columns: Sequence[str]):
        super().__init__()
        self.shards, self.columns = list(shards), list(columns)

    def expand(self, rows):
        columns, clean_text = self.columns, contract.CLEAN_TEXT
        with_text = rows | "HasText" >> beam.Partition(lambda row, _: 0 if row.get(clean_text) else 1, 2)
        committed = (rows.pipeline | "CommittedShards" >> beam.Create(self.shards)
                     | "ReadCommitted" >> beam.io.ReadAllFromParquet(columns=[clean_text, contract.LANG, *columns])
                     | "CommittedWithText" >> beam.Filter(lambda row: bool(row.get(clean_text)))
                     | "KeyCommitted" >> beam.Map(committed_entry, columns))
        new = with_text[0] | "KeyNew" >> beam.Map(lambda row: (row[clean_text], row))
        carried = ({"new": new, "committed": committed} | "ByText" >> beam.CoGroupByKey()
                   | "Carry" >> beam.FlatMap(lambda item: carry_group(item[1]["new"], item[1]["committed"])))
        return (carried, with_text[1]) | "WithEmpty" >> beam.Flatten()
