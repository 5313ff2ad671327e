"""An output partition that is either complete or clearly not.

The pipeline writes into DIR/_staging-<run id>/. After the pipeline has finished and the
counts reconcile, commit() replaces the partition: it removes _SUCCESS and _manifest.json
first (the partition is then visibly incomplete), removes the previous run's shards and
dead letters (whatever their count), moves the new ones in, and writes _manifest.json and
_SUCCESS last. Readers that wait for _SUCCESS never see a half-written partition.
"""
from __future__ import annotations

import glob
import json
import posixpath
import shutil
from collections import Counter
from typing import Iterable

from apache_beam.io.filesystems import FileSystems

from transforms.records import decode_dead_letter, split_dead_letter_lines

SUCCESS = "_SUCCESS"
MANIFEST = "_manifest.json"
ERRORS_DIR = "_errors"
SHARD_PREFIX = "labels"


class ReconciliationError(RuntimeError):
    """Records read != rows written + records dead-lettered: something was lost or duplicated."""


def join(*parts: str) -> str:
    return FileSystems.join(*parts)


def _glob(pattern: str) -> list[str]:
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def _write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as handle:
        handle.write(text.encode("utf-8"))


def shard_paths(directory: str) -> list[str]:
    return _glob(join(directory, f"{SHARD_PREFIX}-*.parquet"))


def dead_letter_paths(directory: str) -> list[str]:
    return _glob(join(directory, ERRORS_DIR, "*.jsonl"))


def read_manifest(directory: str) -> dict | None:
    """The manifest of a complete partition, or None when the partition is not complete."""
    if not FileSystems.exists(join(directory, SUCCESS)) or not FileSystems.exists(join(directory, MANIFEST)):
        return None
    with FileSystems.open(join(directory, MANIFEST)) as handle:
        return json.loads(handle.read().decode("utf-8"))


def reason_kind(reason: str) -> str:
    """A dead letter's reason without its details: 'invalid JSON: Expecting value...' -> 'invalid JSON'."""
    return reason.split(":", 1)[0].strip()


def count_outputs(directory: str) -> dict:
    """Rows, distinct ids and dead letters as found in the files themselves (Parquet footers,
    the id column, the dead-letter lines): the ground truth the manifest reconciles against."""
    import pyarrow.parquet as pq

    rows, ids = 0, Counter()
    for path in shard_paths(directory):
        with FileSystems.open(path) as handle:
            table = pq.read_table(handle, columns=["id"])
        rows += table.num_rows
        ids.update(table.column("id").to_pylist())
    by_reason, broken_files = Counter(), []
    for path in dead_letter_paths(directory):
        with FileSystems.open(path) as handle:
            for line in split_dead_letter_lines(handle.read().decode("utf-8")):
                letter = decode_dead_letter(line)
                if letter.get("position") is None and not str(letter.get("source", "")).startswith("classifier:"):
                    broken_files.append({"source": letter["source"], "reason": letter["reason"]})
                else:
                    by_reason[reason_kind(letter["reason"])] += 1
    return {
        "rows_written": rows,
        "duplicate_ids": sum(n - 1 for n in ids.values() if n > 1),
        "dead_lettered": sum(by_reason.values()),
        "dead_lettered_by_reason": dict(sorted(by_reason.items())),
        "files_broken_off": broken_files,
    }


def reconcile(records_read: int, found: dict) -> None:
    if records_read != found["rows_written"] + found["dead_lettered"]:
        raise ReconciliationError(
            f"records read ({records_read}) != rows written ({found['rows_written']}) + dead-lettered "
            f"({found['dead_lettered']}); the partition is left without {SUCCESS}"
        )


def _delete(paths: Iterable[str]) -> None:
    paths = [p for p in paths if FileSystems.exists(p)]
    if paths:
        FileSystems.delete(paths)


def _is_local(path: str) -> bool:
    return "://" not in path


def staging_dirs(directory: str) -> list[str]:
    pattern = join(directory, "_staging-*")
    if _is_local(pattern):
        return sorted(glob.glob(pattern))
    return sorted({p[: p.index("/", len(directory.rstrip("/")) + 1)] for p in _glob(pattern + "/**")})


def _delete_tree(path: str) -> None:
    if _is_local(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        _delete(_glob(path.rstrip("/") + "/**"))


def mark_incomplete(directory: str) -> None:
    _delete([join(directory, SUCCESS), join(directory, MANIFEST)])


def commit(staging: str, directory: str, manifest: dict) -> None:
    """Replace the partition in `directory` with the staged run; _manifest.json and _SUCCESS last."""
    mark_incomplete(directory)
    _delete(shard_paths(directory) + dead_letter_paths(directory))
    sources, targets = [], []
    for path in shard_paths(staging):
        sources.append(path)
        targets.append(join(directory, posixpath.basename(path)))
    for path in dead_letter_paths(staging):
        sources.append(path)
        targets.append(join(directory, ERRORS_DIR, posixpath.basename(path)))
    errors_dir = join(directory, ERRORS_DIR)
    if any(t.startswith(errors_dir) for t in targets) and not FileSystems.exists(errors_dir):
        FileSystems.mkdirs(errors_dir)
    if sources:
        FileSystems.rename(sources, targets)
    for leftover in staging_dirs(directory):  # ours, and those of runs that failed before committing
        _delete_tree(leftover)

    _write_text(join(directory, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    _write_text(join(directory, SUCCESS), "")
