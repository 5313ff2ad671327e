"""What the pipeline's last step does, as a plain function: once every Parquet shard and
dead-letter file is written, check that no other run committed the partition meanwhile, that
the staged files are exactly those the pipeline wrote, that the in-pipeline counts reconcile
with them, then make the manifest (counts, languages, carried columns, provenance, the run's
outcome) and commit the partition (transforms/partition.py). The Beam step around it
(pipelines.beam_steps.CommitPartitionFn) only hands it the written names and the summed counts.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable, Mapping, Optional

from transforms import contract, partition
from transforms.outcome import run_problem
from transforms.reuse import provenance


def commit_partition(staging: str, directory: str, base_manifest: dict, base_run: Optional[str],
                     written: Iterable[str], counts: Mapping[str, int], routes=None,
                     previous: Optional[dict] = None, outcome_limits: Optional[dict] = None) -> dict:
    """Commit the staged run whose launcher knew base_manifest (its run_id, checkpoints, ...) and
    saw base_run committed; `written`: the paths of the files the pipeline wrote; `counts`: the
    in-pipeline counts (transforms.contract's keys); `previous`: the committed manifest this run
    carries columns from, if any; `outcome_limits`: run_problem's allow_empty and max_dead_share.
    Returns the manifest. A retry of a step whose worker died mid-commit finishes that commit."""
    run_id = base_manifest["run_id"]
    done = partition.resume(directory, run_id)
    if done:
        return done
    current = partition.committed_run(directory)
    if current != base_run:  # also what a retry after a lost race finds
        partition.Storage().delete_tree(staging)  # this run's output is discarded
        raise partition.ConcurrentRunError(
            f"another run ({current}) committed {directory} while this run ({run_id}) was running; "
            f"that partition stands")
    found = partition.count_outputs(staging, staged=True)
    verify_written(staging, found, written)
    partition.reconcile(counts.get(contract.RECORDS_READ, 0), found)
    manifest = run_manifest(base_manifest, counts, found, datetime.now(timezone.utc), routes, previous,
                            outcome_limits or {})
    partition.commit(staging, directory, manifest, base_run=base_run)
    return manifest


def verify_written(staging: str, found: dict, written: Iterable[str]) -> None:
    """The staged files (count_outputs' found) are exactly those the pipeline wrote."""
    names = {partition.committed_name(partition.relative(path, staging)) for path in written}
    if set(found["files"]) != names:
        raise partition.VerificationError(
            f"{staging} holds {sorted(found['files'])}, the pipeline wrote {sorted(names)}")


def run_manifest(base_manifest: dict, counts: Mapping[str, int], found: dict, finished: datetime, routes,
                 previous: Optional[dict], outcome_limits: Mapping) -> dict:
    """The manifest a run commits: partition.finish_manifest's, with the languages, the carried
    rows, each classifier's provenance and the run's problem (None: success)."""
    names = list(base_manifest["checkpoints"])
    manifest = partition.finish_manifest(base_manifest, dict(counts), found, finished)
    manifest.update(language_manifest(counts, routes))
    manifest["carried"] = {name: counts.get(contract.carried_key(name), 0) for name in names}
    manifest["provenance"] = provenance(previous, counts, base_manifest["run_id"], names)
    manifest["problem"] = run_problem(manifest[contract.RECORDS_READ], found["rows_written"],
                                      found["dead_lettered_by_reason"], found["files_broken_off"], **outcome_limits)
    return manifest


def language_manifest(counts: Mapping[str, int], routes) -> dict:
    """The manifest's language fields from the in-pipeline counts: posts per language and, per
    classifier, the rows written with its labels and those routing kept from it (outside its
    languages or script), as the handler counted them (models.batch_labeling.LabeledBatch)."""
    languages = {contract.key_language(key): n for key, n in sorted(counts.items())
                 if contract.key_language(key) is not None and n}
    by_classifier = {name: {"labeled": counts.get(contract.labeled_key(name), 0),
                            "skipped_language": counts.get(contract.skipped_language_key(name), 0)}
                     for name in routes or {}}
    return {"languages": languages, "by_classifier": by_classifier}
