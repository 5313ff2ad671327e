"""An output partition that is either complete or clearly not, however many runs write it.

A run writes into DIR/_staging-<run id>/ and, as the pipeline's last step, commits:

1. **Lock.** It creates DIR/_commit.lock exclusively (local: O_EXCL; gs://: a generation-0
   precondition; s3://: If-None-Match). The lock holds the run's journal: the staged files,
   where each goes, and the manifest. A second writer finds the lock and fails loudly.
2. **Check the race.** The run remembers, at launch, which run's partition was committed
   (`base_run`). If another run committed since, this run lost the race: it fails loudly and
   leaves the committed partition alone.
3. **Back up, then move in.** _SUCCESS, _manifest.json, shards and dead letters move to
   DIR/_previous-<run id>/ (nothing is deleted yet), then the staged files move in.
4. **Publish.** _manifest.json, then _SUCCESS, only after checking at that moment that exactly
   the files the manifest lists are in place with the row counts it states. A suspect run (its
   manifest names a `problem`: transforms/outcome.py, exit 3) publishes its manifest but no _SUCCESS.
5. **Clean up.** The backup, the staging directory and the lock are deleted.

An error in steps 3-4 rolls back (staged files back to staging, the backup back in place):
the old partition is complete again. A stop signal (transforms/stopping.py) waits until the
commit is done. A process killed in steps 3-4 leaves the lock and its journal; the same run
retried (Dataflow retries a failed bundle), or the next run as soon as the lock's owner is
provably gone (transforms/liveness.py: on the same machine its process is dead; elsewhere it
stopped renewing its heartbeat for LOCK_PATIENCE_S), rolls the journal forward (or back when the
staged files are no longer all there), so the old or the new partition becomes complete, never
neither. A lock older than LOCK_LEASE_S is taken over whatever its owner: the last resort.

Readers that glob (`root/**/*.parquet`) see only committed shards: staged Parquet files end in
STAGED_SUFFIX (Beam's temporary files too, as they take the shards' suffix) and backed-up ones in
BACKUP_SUFFIX, so no name outside the committed places ends in `.parquet`.

A run that fails deletes its own staging directory (pipelines/labeling.py); a run that commits
deletes the staging of runs whose owner (a launcher that runs the pipeline in its own process,
recorded in the directory's OWNER file) is provably gone as above, and of any run that started
more than STAGING_MAX_AGE_S ago (a remote job, whose launcher may be gone while it runs).

Everything here works on a small Storage interface, so tests inject faults at every step.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import posixpath
import shutil
import threading
from collections import Counter
from datetime import datetime, timezone

from apache_beam.io.filesystems import FileSystems

from transforms import liveness, stopping, stores
from transforms.contract import EMPTY_TEXT_ROWS, RECORDS_READ, SHARD_SUFFIX, inferences_key, shard_glob, tokens_key
from transforms.records import decode_dead_letter, is_classifier_source, split_dead_letter_lines

LOG = logging.getLogger(__name__)
SUCCESS = "_SUCCESS"
MANIFEST = "_manifest.json"
LOCK = "_commit.lock"
ERRORS_DIR = "_errors"
STAGING_PREFIX = "_staging-"
BACKUP_PREFIX = "_previous-"
BACKED_UP = "_BACKED_UP"  # in the backup: every old file is there, staged files may be moving in
STAGED_SUFFIX = ".staged"  # staged Parquet: labels-00000-of-00001.parquet.staged
BACKUP_SUFFIX = ".previous"  # backed-up Parquet, in _previous-<run>/
STAGED_SHARD_SUFFIX = SHARD_SUFFIX + STAGED_SUFFIX  # what the pipeline's Parquet sink writes
OWNER = "_OWNER"  # in a staging directory: the launcher that runs its pipeline in-process, and its heartbeat
WORKER_PREFIX = "_WORKER-"  # in a staging directory: a worker process that could run the job's code (note_worker)
LOCK_HEARTBEAT = LOCK + ".heartbeat"  # the lock holder's heartbeat, renewed while it commits
RUN_TIME_FORMAT = "%Y%m%dT%H%M%S"
HEARTBEAT_S = 10  # how often a lock holder or a staging owner renews its heartbeat
LOCK_PATIENCE_S = 90  # a lock holder on another machine silent this long is gone
STAGING_PATIENCE_S = 180  # the same for a staging directory's owner
LOCK_LEASE_S = 30 * 60  # a commit only moves files; a lock this old belongs to a dead run
STAGING_MAX_AGE_S = 3 * 24 * 3600  # longer than any job runs: older staging dirs are abandoned


class ReconciliationError(RuntimeError):
    """Records read != rows written + records dead-lettered: something was lost or duplicated."""


class ConcurrentRunError(RuntimeError):
    """Another run of the same partition is committing it, or committed it while this run ran."""


class VerificationError(RuntimeError):
    """The files in the partition are not exactly those the manifest lists."""


# ------------------------------------------------------------------------------- storage


class Storage:
    """The few file operations a commit needs, on Beam's FileSystems (local, gs://, s3://),
    with an exclusive create from each store's own conditional write."""

    def exists(self, path: str) -> bool:
        return FileSystems.exists(path)

    def glob(self, pattern: str) -> list[str]:
        return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)

    def read(self, path: str) -> bytes:
        with FileSystems.open(path) as handle:
            return handle.read()

    def write(self, path: str, data: bytes) -> None:
        with FileSystems.create(path) as handle:
            handle.write(data)

    def write_text(self, path: str, text: str) -> None:
        _write_text(path, text)

    def create_exclusive(self, path: str, data: bytes) -> bool:
        """Create path with data unless it exists; False when it does. Atomic on every store."""
        if is_local(path):
            # Written whole under a private name, then hard-linked into place: link() fails when
            # the path exists, and a reader never sees the file before its content (an O_EXCL
            # create would show an empty lock, which another run could take for a dead one's).
            private = f"{path}.{os.getpid()}-{threading.get_ident()}.tmp"
            try:
                with open(private, "wb") as handle:  # a full disk fails here: the finally removes it
                    handle.write(data)
                os.link(private, path)
            except FileExistsError:
                return False
            finally:
                if os.path.lexists(private):
                    os.unlink(private)
            return True
        if path.startswith("gs://"):
            from google.api_core.exceptions import PreconditionFailed
            from google.cloud import storage

            bucket, _, name = path[len("gs://"):].partition("/")
            try:
                storage.Client().bucket(bucket).blob(name).upload_from_string(data, if_generation_match=0)
            except PreconditionFailed:
                return False
            return True
        if path.startswith("s3://"):
            from botocore.exceptions import ClientError

            bucket, _, key = path[len("s3://"):].partition("/")
            try:
                stores.s3_client().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                    return False
                raise
            return True
        raise ValueError(f"no exclusive create for {path!r}: use a local path, gs:// or s3://")

    def rename(self, source: str, target: str) -> None:
        if is_local(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
        FileSystems.rename([source], [target])

    def delete(self, path: str) -> None:
        if self.exists(path):
            FileSystems.delete([path])

    def delete_tree(self, path: str) -> None:
        if is_local(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            paths = self.glob(path.rstrip("/") + "/**")
            if paths:
                FileSystems.delete(paths)


def is_local(path: str) -> bool:
    return "://" not in path


def join(*parts: str) -> str:
    return FileSystems.join(*parts)


def missing_directories(directory: str) -> tuple[str, ...]:
    """The local directories a run would create to write into directory (it and its missing
    parents, deepest first): what remove_empty may take away again. None for an object store."""
    if not is_local(directory):
        return ()
    missing, path = [], os.path.abspath(directory)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        missing.append(path)
        path = os.path.dirname(path)
    return tuple(missing)


def remove_empty(directories: tuple[str, ...]) -> None:
    """Remove directories (deepest first) as long as each is empty: a run that stopped before
    committing leaves no empty output directory behind, and never removes what holds anything."""
    for path in directories:
        try:
            os.rmdir(path)
        except OSError:  # not empty (another run writes there), or already gone
            if os.path.exists(path):
                return


def _write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as handle:
        handle.write(text.encode("utf-8"))


# ------------------------------------------------------------------------------- reading


def shard_paths(directory: str, storage: Storage | None = None, staged: bool = False) -> list[str]:
    """The Parquet shards in a partition, or (staged) in a staging directory."""
    return (storage or Storage()).glob(join(directory, shard_glob(STAGED_SHARD_SUFFIX if staged else SHARD_SUFFIX)))


def dead_letter_paths(directory: str, storage: Storage | None = None) -> list[str]:
    return (storage or Storage()).glob(join(directory, ERRORS_DIR, "*.jsonl"))


def data_paths(directory: str, storage: Storage | None = None, staged: bool = False) -> list[str]:
    return shard_paths(directory, storage, staged) + dead_letter_paths(directory, storage)


def relative(path: str, directory: str) -> str:
    return path[len(directory.rstrip("/")) + 1:]


def hidden_name(name: str, suffix: str) -> str:
    """A Parquet file's name while staged or backed up: not one a `*.parquet` glob matches."""
    return name + suffix if name.endswith(".parquet") else name


def committed_name(name: str) -> str:
    """The name a staged or backed-up file has in the partition."""
    for suffix in (STAGED_SUFFIX, BACKUP_SUFFIX):
        if name.endswith(".parquet" + suffix):
            return name[:-len(suffix)]
    return name


def read_manifest(directory: str, storage: Storage | None = None, suspect: bool = False) -> dict | None:
    """The manifest of a complete partition, or None when the partition is not complete.
    A manifest that cannot be read or parsed means "not complete", with a warning.
    suspect: also the manifest of a suspect run's partition (exit 3), committed like any other but
    without _SUCCESS; its manifest names the `problem`."""
    storage = storage or Storage()
    success = storage.exists(join(directory, SUCCESS))
    try:
        if not (success or suspect) or not storage.exists(join(directory, MANIFEST)):
            return None
        manifest = json.loads(storage.read(join(directory, MANIFEST)).decode("utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError(f"a JSON {type(manifest).__name__}, not an object")
    except Exception as exc:  # noqa: BLE001 - any unreadable manifest means "incomplete"
        if success:
            warning = (f"{directory} has {SUCCESS} but its {MANIFEST} cannot be read ({exc}): treating the "
                       f"partition as incomplete")
            if warning not in _WARNED:  # the launcher and the commit step both look: say it once
                _WARNED.add(warning)
                LOG.warning("%s", warning)
        return None
    return manifest if success or manifest.get("problem") else None  # else a commit between the two


def state_line(directory: str, run_id: str | None = None, storage: Storage | None = None) -> str:
    """What a reader finds in the partition now, in a sentence (for the line a stopped run prints)."""
    storage = storage or Storage()
    try:
        if storage.exists(join(directory, LOCK)):
            held = _read_lock(join(directory, LOCK), storage) or {}
            return (f"{directory} is being committed by run {held.get('run_id')} ({LOCK} held); the next run "
                    f"finishes or rolls back that commit as soon as its process is gone")
        manifest = read_manifest(directory, storage)
    except Exception as exc:  # noqa: BLE001 - the line must be printed whatever the store says
        return f"{directory} could not be read ({exc})"
    if manifest is None:
        return f"{directory} has no complete partition (no {SUCCESS}); nothing of this run was committed"
    if run_id is not None and manifest.get("run_id") == run_id:
        return (f"{directory} holds this run's complete partition ({manifest.get('rows_written')} rows, "
                f"{SUCCESS}): it was committed before the stop")
    return (f"{directory} holds its previous complete partition unchanged (run {manifest.get('run_id')}, "
            f"{manifest.get('rows_written')} rows, {SUCCESS}); nothing of this run was committed")


_WARNED: set[str] = set()


def committed_run(directory: str, storage: Storage | None = None) -> str | None:
    """The run id of the partition last committed in directory (complete or suspect), or None."""
    manifest = read_manifest(directory, storage, suspect=True)
    return manifest.get("run_id") if manifest else None


def reason_kind(reason: str) -> str:
    """A dead letter's reason without its details: 'invalid JSON: Expecting value...' -> 'invalid JSON'."""
    return reason.split(":", 1)[0].strip()


def dead_letter_lines(data: bytes) -> list[str]:
    """The dead letters of one _errors file: one JSON object a line."""
    return split_dead_letter_lines(data.decode("utf-8"))


def parquet_rows(path: str, storage: Storage | None = None) -> int:
    import pyarrow.parquet as pq

    with FileSystems.open(path) as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def count_outputs(directory: str, storage: Storage | None = None, staged: bool = False) -> dict:
    """Rows, distinct ids and dead letters as found in the files themselves (Parquet footers,
    the id column, the dead-letter lines): the ground truth the manifest reconciles against.
    "files" maps each file (relative to directory, named as in the partition) to its rows or
    dead letters. staged: directory is a staging directory."""
    import pyarrow.parquet as pq

    storage = storage or Storage()
    rows, ids, files = 0, Counter(), {}
    for path in shard_paths(directory, storage, staged):
        with FileSystems.open(path) as handle:
            table = pq.read_table(handle, columns=["id"])
        rows += table.num_rows
        files[committed_name(relative(path, directory))] = table.num_rows
        ids.update(table.column("id").to_pylist())
    by_reason, broken_files = Counter(), []
    for path in dead_letter_paths(directory, storage):
        lines = dead_letter_lines(storage.read(path))
        files[relative(path, directory)] = len(lines)
        for line in lines:
            letter = decode_dead_letter(line)
            if letter.get("position") is None and not is_classifier_source(letter.get("source")):
                broken_files.append({"source": letter["source"], "reason": letter["reason"]})
            else:
                by_reason[reason_kind(letter["reason"])] += 1
    return {
        "rows_written": rows,
        "duplicate_ids": sum(n - 1 for n in ids.values() if n > 1),
        "dead_lettered": sum(by_reason.values()),
        "dead_lettered_by_reason": dict(sorted(by_reason.items())),
        "files_broken_off": broken_files,
        "files": files,
    }


def reconcile(records_read: int, found: dict) -> None:
    if records_read != found["rows_written"] + found["dead_lettered"]:
        raise ReconciliationError(
            f"records read ({records_read}) != rows written ({found['rows_written']}) + dead-lettered "
            f"({found['dead_lettered']}); the partition is left without {SUCCESS}"
        )


def verify_in_place(directory: str, files: dict, storage: Storage) -> None:
    """Exactly the listed files are in directory, with the rows (Parquet footer) or dead
    letters (lines) the manifest states."""
    present = {relative(p, directory) for p in data_paths(directory, storage)}
    if present != set(files):
        extra, missing = sorted(present - set(files)), sorted(set(files) - present)
        raise VerificationError(f"{directory} does not hold exactly the files its manifest lists: "
                                f"{', '.join(extra) or 'none'} not listed; {', '.join(missing) or 'none'} missing")
    for name, expected in files.items():
        path = join(directory, name)
        found = (parquet_rows(path, storage) if name.endswith(".parquet")
                 else len(dead_letter_lines(storage.read(path))))
        if found != expected:
            raise VerificationError(f"{path} has {found} rows, the manifest says {expected}")


def finish_manifest(base: dict, counts: dict, found: dict, finished: datetime) -> dict:
    """The manifest of a run: what the launcher knew (base), the counts taken in the pipeline,
    what the files hold (found), and what the partition cost."""
    wall = (finished - datetime.fromisoformat(base["started"])).total_seconds()
    read = counts.get(RECORDS_READ, 0)
    price = base.get("cost_per_hour_usd")
    cost = price * base.get("cost_workers", 1) * wall / 3600 if price is not None else None
    return {
        **base, RECORDS_READ: read, **found,
        EMPTY_TEXT_ROWS: counts.get(EMPTY_TEXT_ROWS, 0),
        "inferences": {name: counts.get(inferences_key(name), 0) for name in base["checkpoints"]},
        "tokens": {name: counts.get(tokens_key(name), 0) for name in base["checkpoints"]},
        "finished": finished.isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 3),
        "posts_per_second": round(read / wall, 3) if wall > 0 else None,
        "cost_usd": round(cost, 6) if cost is not None else None,
        "cost_per_million_posts_usd": round(cost / read * 1e6, 4) if cost is not None and read else None,
    }


# ------------------------------------------------------------------------------- runs


def new_run_id(started: datetime, suffix: str) -> str:
    return f"{started.astimezone(timezone.utc):{RUN_TIME_FORMAT}}-{suffix}"


def staging_dir(directory: str, run_id: str) -> str:
    return join(directory, STAGING_PREFIX + run_id)


def run_started(name: str) -> datetime | None:
    """The start time in a _staging-/_previous- directory name, or None."""
    stamp = posixpath.basename(name.rstrip("/")).split("-", 1)[-1].split("-", 1)[0]
    try:
        return datetime.strptime(stamp, RUN_TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def staging_dirs(directory: str, storage: Storage | None = None, prefix: str = STAGING_PREFIX) -> list[str]:
    """The staging (or with prefix BACKUP_PREFIX, backup) directories in a partition."""
    storage = storage or Storage()
    pattern = join(directory, prefix + "*")
    if is_local(pattern):
        return sorted(glob.glob(pattern))
    return sorted({p[: p.index("/", len(directory.rstrip("/")) + 1)] for p in storage.glob(pattern + "/**")})


def claim_staging(staging: str, storage: Storage | None = None) -> liveness.Heartbeat:
    """Record this process as the owner of a staging directory (a launcher that runs the
    pipeline in its own process, so that its death is the run's): returns the Heartbeat to run
    while the pipeline runs, which other machines go by."""
    storage = storage or Storage()
    fields = {"owner": liveness.owner_record()}
    heartbeat = liveness.Heartbeat(storage, join(staging, OWNER), fields, HEARTBEAT_S, while_exists=True)
    storage.write(join(staging, OWNER), json.dumps({**fields, "beat": datetime.now(timezone.utc).isoformat()})
                  .encode("utf-8"))
    return heartbeat


def note_worker(staging: str, storage: Storage | None = None) -> None:
    """Record in the staging directory that a worker process runs this job's code (one file per
    process, never empty: S3 refuses empty multipart uploads), for the launcher's start deadline."""
    storage = storage or Storage()
    owner = liveness.owner_record()
    storage.write(join(staging, f"{WORKER_PREFIX}{owner['host']}-{owner['pid']}"), json.dumps(owner).encode("utf-8"))


def worker_noted(staging: str, storage: Storage | None = None) -> bool:
    """Whether any worker process has recorded itself in the staging directory (note_worker)."""
    return bool((storage or Storage()).glob(join(staging, WORKER_PREFIX + "*")))


def staging_owner_gone(path: str, now: datetime, storage: Storage) -> bool:
    """Whether the run that writes into staging directory path is provably dead (its owner's
    process is, or its heartbeat stopped), or started more than STAGING_MAX_AGE_S ago."""
    started = run_started(path)
    if started is not None and (now - started).total_seconds() > STAGING_MAX_AGE_S:
        return True
    record = liveness.read_json(storage, join(path, OWNER))
    if not record:
        return False  # a remote job's, or one just being created: only its age tells
    if liveness.process_gone(record.get("owner")):
        return True
    return (not liveness.same_machine(record.get("owner"))
            and liveness.heartbeat_stale(_when(record.get("beat")), now, STAGING_PATIENCE_S))


def _when(stamp) -> datetime:
    try:
        return datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return datetime.fromtimestamp(0, timezone.utc)


def delete_dead_staging(directory: str, now: datetime, storage: Storage, keep: str | None = None,
                        done: str | None = None) -> list[str]:
    """Delete the staging directories of runs that are provably dead or abandoned (staging_owner_gone),
    or of run `done` (one that committed: what is left is its clean-up's); never a live run's, nor keep."""
    deleted = []
    for path in staging_dirs(directory, storage):
        if path.rstrip("/") == (keep or "").rstrip("/"):
            continue
        if (done and path.rstrip("/") == staging_dir(directory, done)) or staging_owner_gone(path, now, storage):
            storage.delete_tree(path)
            deleted.append(path)
    backups = staging_dirs(directory, storage, BACKUP_PREFIX)  # before the lock is read: a commit that
    held = _read_lock(join(directory, LOCK), storage) if storage.exists(join(directory, LOCK)) else None
    for path in backups:  # starts in between made its backup after this listing
        if path.rstrip("/") != (held or {}).get("backup", "").rstrip("/"):  # no commit's journal needs it
            storage.delete_tree(path)
            deleted.append(path)
    return deleted


def discard_staging(directory: str, run_id: str, storage: Storage | None = None) -> None:
    """After a run that did not commit: delete its staging directory, first finishing or rolling
    back a commit of its own that a dead worker left under the lock."""
    storage = storage or Storage()
    held = _read_lock(join(directory, LOCK), storage) if storage.exists(join(directory, LOCK)) else None
    if held is not None and held.get("run_id") == run_id:
        if not lock_holder_gone(directory, held, datetime.now(timezone.utc), storage):
            return  # its commit still runs somewhere: the journal needs the staged files
        recover(directory, storage, force=True)
    storage.delete_tree(staging_dir(directory, run_id))


# ------------------------------------------------------------------------------- commit


def plan(staging: str, directory: str, manifest: dict, storage: Storage) -> dict:
    """The journal of a commit: where each staged file goes, and what to publish."""
    run_id = manifest["run_id"]
    moves = [[path, join(directory, committed_name(relative(path, staging)))]
             for path in data_paths(staging, storage, staged=True)]
    return {"run_id": run_id, "staging": staging, "backup": join(directory, BACKUP_PREFIX + run_id),
            "moves": moves, "manifest": manifest}


def _acquire(directory: str, journal: dict, storage: Storage, now: datetime) -> None:
    """Create the lock with our journal and owner, first finishing a commit whose holder is gone."""
    lock = join(directory, LOCK)
    body = json.dumps({**journal, "locked_at": now.isoformat(), "owner": liveness.owner_record()}).encode("utf-8")
    for _ in range(3):
        if storage.create_exclusive(lock, body):
            return
        held = _read_lock(lock, storage)
        if held is None:
            continue  # released between our create and our read
        if not lock_holder_gone(directory, held, now, storage):
            owner = held.get("owner") or {}
            raise ConcurrentRunError(
                f"another run ({held['run_id']}) is committing {directory} (lock {lock} taken at "
                f"{held.get('locked_at')} by pid {owner.get('pid', '?')} on {owner.get('host', '?')}, which "
                f"still runs); this run's rows were not committed")
        recover(directory, storage, now)
    raise ConcurrentRunError(f"could not take {lock}: other runs keep committing {directory}")


def lock_holder_gone(directory: str, held: dict, now: datetime, storage: Storage) -> str | None:
    """Why the holder of the lock held is provably gone (its process is dead on this machine, its
    heartbeat stopped on another, or the lock is older than LOCK_LEASE_S), or None."""
    locked = _when(held.get("locked_at"))
    if (now - locked).total_seconds() >= LOCK_LEASE_S:
        return f"its lock is older than {LOCK_LEASE_S} s"
    if held.get("manifest") and committed_run(directory, storage) == held.get("run_id"):
        return "it has published; only its clean-up was left"
    owner = held.get("owner")
    if not owner:
        return None  # a lock without owner (an older version's): only the lease tells
    if liveness.process_gone(owner):
        return f"its process (pid {owner.get('pid')} on {owner.get('host')}) is gone"
    if liveness.same_machine(owner):
        return None
    beat = liveness.read_json(storage, join(directory, LOCK_HEARTBEAT)) or {}
    last = max(locked, _when(beat.get("beat"))) if beat.get("run_id") == held.get("run_id") else locked
    if liveness.heartbeat_stale(last, now, LOCK_PATIENCE_S):
        return f"its heartbeat stopped at {last.isoformat(timespec='seconds')}"
    return None


def _read_lock(lock: str, storage: Storage) -> dict | None:
    try:
        return json.loads(storage.read(lock).decode("utf-8"))
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - a lock we cannot read is a dead run's
        if not storage.exists(lock):
            return None
        LOG.warning("unreadable %s (%s): treated as a dead run's", lock, exc)
        return {"run_id": "unknown", "locked_at": "1970-01-01T00:00:00+00:00", "moves": []}


def _move_in(directory: str, journal: dict, storage: Storage) -> None:
    """Back up the old partition, then move the staged files in. Re-entrant: what already
    moved is skipped, so a retried or recovering commit continues where a dead one stopped."""
    backup = journal["backup"]
    new_targets = {target for _, target in journal["moves"]}
    if not storage.exists(join(backup, BACKED_UP)):  # nothing moved in yet: every file here is old
        old = [join(directory, SUCCESS), join(directory, MANIFEST)] + data_paths(directory, storage)
        for path in old:  # _SUCCESS first: the partition is visibly incomplete from here on
            if storage.exists(path):
                storage.rename(path, join(backup, hidden_name(relative(path, directory), BACKUP_SUFFIX)))
        storage.write(join(backup, BACKED_UP), b"")
    for source, target in journal["moves"]:
        if storage.exists(source):
            storage.rename(source, target)
        elif not storage.exists(target):
            raise VerificationError(f"{source} is gone and {target} is not there")
    stray = [p for p in data_paths(directory, storage) if p not in new_targets]
    if stray:
        raise VerificationError(f"{directory} holds files of no run: {stray}")


def _publish(directory: str, journal: dict, storage: Storage) -> None:
    manifest = journal["manifest"]
    verify_in_place(directory, manifest["files"], storage)
    storage.write_text(join(directory, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    verify_in_place(directory, manifest["files"], storage)  # nothing came or went meanwhile
    if not manifest.get("problem"):  # a suspect run (exit 3) stays readable, but is no success
        storage.write_text(join(directory, SUCCESS), "")


def _roll_back(directory: str, journal: dict, storage: Storage) -> None:
    """Staged files back to staging, then the old partition back from its backup, _SUCCESS last."""
    backup = journal["backup"]
    ours = _manifest_run(join(directory, MANIFEST), storage) == journal["run_id"]
    if ours or storage.exists(join(backup, SUCCESS)):  # else _SUCCESS is the old one, still in place
        storage.delete(join(directory, SUCCESS))
    if ours:
        storage.delete(join(directory, MANIFEST))
    if storage.exists(join(backup, BACKED_UP)):  # else no staged file moved in: targets are old files
        for source, target in journal["moves"]:
            if storage.exists(target):
                if storage.exists(source):  # a copy+delete move that stopped after its copy
                    storage.delete(target)
                else:
                    storage.rename(target, source)
    saved = storage.glob(join(backup, "**")) if not is_local(backup) else sorted(
        p for p in glob.glob(join(backup, "**"), recursive=True) if os.path.isfile(p))
    saved = [p for p in saved if posixpath.basename(p) != BACKED_UP]
    saved.sort(key=lambda p: (p.endswith(SUCCESS), p.endswith(MANIFEST)))  # _SUCCESS last
    for path in saved:
        storage.rename(path, join(directory, committed_name(relative(path, backup))))
    storage.delete_tree(backup)


def _manifest_run(path: str, storage: Storage) -> str | None:
    try:
        return json.loads(storage.read(path).decode("utf-8")).get("run_id")
    except Exception:  # noqa: BLE001 - absent or unreadable: not this run's
        return None


def _release(directory: str, storage: Storage) -> None:
    try:
        storage.delete(join(directory, LOCK_HEARTBEAT))
    finally:  # a lock left behind would hold the partition until its owner is provably gone
        storage.delete(join(directory, LOCK))


def _clean_up(directory: str, journal: dict, storage: Storage) -> None:
    """After the publish: the partition is committed whatever fails here, so a failure is a
    warning, and what stays is deleted by the next run that commits (delete_dead_staging)."""
    for step in (lambda: storage.delete_tree(journal["backup"]), lambda: storage.delete_tree(journal["staging"]),
                 lambda: _release(directory, storage)):
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - see above
            LOG.warning("committed %s, but its clean-up failed (%s): the next run that commits finishes it",
                        directory, exc)


def _finish(directory: str, journal: dict, storage: Storage) -> None:
    """Roll the journal forward, renewing the lock's heartbeat meanwhile; on any error (a
    KeyboardInterrupt where no stop handler is installed included) roll back, so the old
    partition stands."""
    heartbeat = liveness.Heartbeat(storage, join(directory, LOCK_HEARTBEAT), {"run_id": journal["run_id"]},
                                   HEARTBEAT_S)
    try:
        with heartbeat:
            _move_in(directory, journal, storage)
            _publish(directory, journal, storage)
    except (Exception, KeyboardInterrupt):
        LOG.error("commit of %s failed: restoring the previous partition", directory, exc_info=True)
        _roll_back(directory, journal, storage)
        _release(directory, storage)
        raise
    _clean_up(directory, journal, storage)


def recover(directory: str, storage: Storage | None = None, now: datetime | None = None,
            force: bool = False) -> str | None:
    """Finish a commit whose holder is gone (lock_holder_gone; force: whatever the holder):
    forward when its staged files are all there, else back. Returns the run id recovered, or
    None when there was none."""
    storage, now = storage or Storage(), now or datetime.now(timezone.utc)
    lock = join(directory, LOCK)
    held = _read_lock(lock, storage) if storage.exists(lock) else None
    if held is None:
        return None
    why = "this run's retry" if force else lock_holder_gone(directory, held, now, storage)
    if not why:
        return None
    takeover = join(directory, f"{LOCK}.recovering-{held['run_id']}")
    _take_over(takeover, held["run_id"], directory, now, storage)
    try:
        if _read_lock(lock, storage) != held:
            return None  # finished or replaced meanwhile
        if held.get("manifest") and committed_run(directory, storage) == held["run_id"]:
            _clean_up(directory, held, storage)  # it had published; only the clean-up was left
        elif held.get("manifest"):
            LOG.warning("finishing the commit of run %s in %s (%s)", held["run_id"], directory, why)
            try:
                _finish(directory, held, storage)
            except Exception:  # noqa: BLE001 - rolled back: the old partition stands
                LOG.warning("run %s could not be finished: the previous partition was restored", held["run_id"])
        else:
            _release(directory, storage)
        return held["run_id"]
    finally:
        storage.delete(takeover)


def _take_over(marker: str, run_id: str, directory: str, now: datetime, storage: Storage) -> None:
    """Create the marker that one run recovers run_id's commit, taking over a marker whose
    creator is gone as a lock's."""
    body = json.dumps({"run_id": run_id, "locked_at": now.isoformat(), "owner": liveness.owner_record()})
    for _ in range(2):
        if storage.create_exclusive(marker, body.encode("utf-8")):
            return
        held = liveness.read_json(storage, marker) or {"run_id": run_id}
        if not held.get("owner") or lock_holder_gone(directory, held, now, storage):
            storage.delete(marker)  # a recovery that died (or an older version's marker)
            continue
        break
    raise ConcurrentRunError(f"another run is recovering the commit of {run_id} in {directory}")


def resume(directory: str, run_id: str, storage: Storage | None = None,
           now: datetime | None = None) -> dict | None:
    """For a retried commit step: finish this run's own earlier commit (its lock holds the
    journal) and return the manifest when this run's partition is committed, else None."""
    storage = storage or Storage()
    lock = join(directory, LOCK)
    held = _read_lock(lock, storage) if storage.exists(lock) else None
    if held is not None and held["run_id"] == run_id:
        recover(directory, storage, now or datetime.now(timezone.utc), force=True)
    manifest = read_manifest(directory, storage, suspect=True)
    return manifest if manifest and manifest.get("run_id") == run_id else None


def commit(staging: str, directory: str, manifest: dict, *, base_run: str | None = None,
           storage: Storage | None = None, now: datetime | None = None) -> None:
    """Replace the partition in directory with the staged run (manifest["run_id"]), unless
    another run committed it since this run started (its partition was then base_run). A stop
    signal meanwhile waits until the commit is done or rolled back and the lock released."""
    with stopping.uninterrupted():
        _commit(staging, directory, manifest, base_run, storage or Storage(), now or datetime.now(timezone.utc))


def _commit(staging: str, directory: str, manifest: dict, base_run: str | None, storage: Storage,
            now: datetime) -> None:
    run_id = manifest["run_id"]
    if resume(directory, run_id, storage, now):
        return  # a retried commit of ours: done now
    journal = plan(staging, directory, manifest, storage)
    try:
        _acquire(directory, journal, storage, now)
    except ConcurrentRunError:
        storage.delete_tree(staging)  # this run's output is discarded: the other run's stands
        raise
    current = committed_run(directory, storage)
    if current == run_id:
        _release(directory, storage)
        return
    if current != base_run:
        _release(directory, storage)
        storage.delete_tree(staging)
        raise ConcurrentRunError(
            f"another run ({current}) committed {directory} while this run ({run_id}) was running; "
            f"that partition stands and this run's rows were discarded")
    _finish(directory, journal, storage)
    delete_dead_staging(directory, now, storage, keep=staging, done=current)
