"""Stops, full disks and dead runs against the partition commit (transforms/partition.py), and
what readers that glob the dataset root see meanwhile: polars' and DuckDB's `root/**/*.parquet`
with hive partitioning and pyarrow.dataset, which must match exactly the committed shards.

A fault-injecting Storage sends a real SIGTERM to this process, or fails with ENOSPC, at every
step of a commit; a child process is SIGKILLed mid-commit for the takeover of its lock. Whole
runs stopped by real signals are in tests/test_stopping_runs.py."""
from __future__ import annotations

import errno
import glob
import json
import os
import signal
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pytest

from tests.test_commit import NOW, FaultyStorage, Killed, committed, complete_ids, leftovers, stage_run
from transforms import contract, liveness, partition, stopping

DT = "dt=2026-11-21"


def glob_readers(root) -> dict[str, list[str]]:
    """The ids each reader finds under the dataset root (no file at all: none)."""
    pattern = os.path.join(str(root), "**", "*.parquet")
    if not glob.glob(pattern, recursive=True):
        return {"polars": [], "duckdb": [], "pyarrow": []}
    polars_ids = pl.scan_parquet(pattern, hive_partitioning=True).select("id").collect()["id"].to_list()
    duck_ids = [row[0] for row in duckdb.sql(
        f"select id from read_parquet('{pattern}', hive_partitioning=true)").fetchall()]
    arrow_ids = ds.dataset(str(root), format="parquet", partitioning="hive").to_table(columns=["id"])
    return {"polars": sorted(polars_ids), "duckdb": sorted(duck_ids),
            "pyarrow": sorted(arrow_ids.column("id").to_pylist())}


def committed_place_ids(directory) -> list[str]:
    """The ids in the shards at their committed names (DIR/labels-*.parquet), read one by one."""
    import pyarrow.parquet as pq

    ids = []
    for path in glob.glob(os.path.join(str(directory), "labels-*.parquet")):
        ids += pq.read_table(path, columns=["id"]).column("id").to_pylist()
    return sorted(ids)


def assert_readers_see_only_committed_shards(root, directory):
    everything = set(glob.glob(os.path.join(str(root), "**", "*.parquet"), recursive=True))
    assert everything == set(glob.glob(os.path.join(str(directory), "labels-*.parquet"))), everything
    expected = committed_place_ids(directory)
    assert glob_readers(root) == {"polars": expected, "duckdb": expected, "pyarrow": expected}


def steps_of_a_commit(tmp_path) -> int:
    directory = tmp_path / "count"
    committed(directory, "20261121T010000-old")
    staging, manifest, _ = stage_run(directory, "20261121T020000-new", 2)
    storage = FaultyStorage()
    partition.commit(staging, str(directory), manifest, base_run="20261121T010000-old", storage=storage, now=NOW)
    return storage.steps


@pytest.fixture(scope="module")
def commit_steps(tmp_path_factory):
    return steps_of_a_commit(tmp_path_factory.mktemp("steps"))


def old_and_new(tmp_path, step):
    root = tmp_path / f"step{step}"
    directory = root / DT
    old_ids = committed(directory, "20261121T010000-old", shards=2)
    staging, manifest, new_ids = stage_run(directory, "20261121T020000-new", 2)
    return root, directory, staging, manifest, old_ids, new_ids


def test_staged_and_backed_up_files_are_named_so_that_no_parquet_glob_matches_them(tmp_path, commit_steps):
    """Killed at every step of a commit (no recovery yet), the globbing readers see exactly the
    shards in the committed places, never a staged or backed-up copy (before: 3x the rows)."""
    for step in range(1, commit_steps + 1):
        root, directory, staging, manifest, old_ids, new_ids = old_and_new(tmp_path, step)
        assert_readers_see_only_committed_shards(root, directory)  # during the run: staged files exist
        with pytest.raises(Killed):
            partition.commit(staging, str(directory), manifest, base_run="20261121T010000-old",
                             storage=FaultyStorage(lambda s, op, a, step=step: s == step and _raise(Killed())),
                             now=NOW)
        assert_readers_see_only_committed_shards(root, directory)
        if complete_ids(directory) is not None:
            assert committed_place_ids(directory) in (old_ids, new_ids)


def test_beams_temporary_parquet_files_carry_the_staged_suffix(tmp_path):
    """A killed run's footer-less temporary file, named as Beam's Parquet sink names it, is
    invisible to the globbing readers (before: polars and DuckDB failed on it)."""
    import apache_beam as beam
    import pyarrow as pa

    root, directory = tmp_path, tmp_path / DT
    committed(directory, "20261121T010000-old", shards=1)
    staging = partition.staging_dir(str(directory), "20261121T020000-killed")
    sink = beam.io.WriteToParquetBatched(partition.join(staging, contract.SHARD_PREFIX), pa.schema([("id", pa.string())]),
                                         file_name_suffix=partition.STAGED_SHARD_SUFFIX)._sink
    writer = sink.open_writer(sink.initialize_write(), "0123-uid")  # opened, never closed: no footer
    writer.write(pa.table({"id": ["a row of a killed run"]}))
    temporary = glob.glob(os.path.join(staging, "beam-temp-*", "*"))
    assert temporary and all(name.endswith(partition.STAGED_SUFFIX) for name in temporary), temporary
    assert_readers_see_only_committed_shards(root, directory)


def _raise(exc):
    raise exc


def send_sigterm_at(step):
    def hook(current, op, args):
        if current == step:
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal: its handler runs in this thread now
    return hook


def test_sigterm_at_any_step_of_a_commit_finishes_it_then_stops(tmp_path, commit_steps):
    for step in range(1, commit_steps + 1):
        root, directory, staging, manifest, old_ids, new_ids = old_and_new(tmp_path, step)
        with stopping.handled(), pytest.raises(stopping.Stopped) as stopped:
            partition.commit(staging, str(directory), manifest, base_run="20261121T010000-old",
                             storage=FaultyStorage(send_sigterm_at(step)), now=NOW)
        assert stopped.value.exit_code == 143
        assert complete_ids(directory) == new_ids, step
        assert leftovers(directory) == [], step  # the lock released, no staging, no backup
        assert_readers_see_only_committed_shards(root, directory)
        assert "holds this run's complete partition" in partition.state_line(str(directory), manifest["run_id"])


def test_sigterm_then_a_full_disk_in_the_commit_rolls_back_then_stops(tmp_path, commit_steps):
    for step in range(1, commit_steps):
        root, directory, staging, manifest, old_ids, new_ids = old_and_new(tmp_path, step)

        failed = []

        def signal_then_full(current, op, args, step=step):
            send_sigterm_at(step)(current, op, args)
            if current == step + 1:
                failed.append((op, args))
                raise OSError(errno.ENOSPC, "No space left on device")

        with stopping.handled(), pytest.raises(stopping.Stopped):
            partition.commit(staging, str(directory), manifest, base_run="20261121T010000-old",
                             storage=FaultyStorage(signal_then_full), now=NOW)
        seen = complete_ids(directory)
        assert seen in (old_ids, new_ids), step  # finished, or rolled back when the disk filled
        if os.path.exists(directory / partition.LOCK):  # only when deleting the lock itself failed
            assert failed == [("delete", (str(directory / partition.LOCK),))], (step, failed)
        assert_readers_see_only_committed_shards(root, directory)


def test_a_full_disk_at_any_write_of_a_commit_keeps_the_old_partition_and_the_next_success_leaves_nothing(
        tmp_path, commit_steps):
    for step in range(1, commit_steps + 1):
        root, directory, staging, manifest, old_ids, new_ids = old_and_new(tmp_path, step)
        storage = FaultyStorage(lambda s, op, a, step=step: s == step and _raise(OSError(errno.ENOSPC, "full")))
        try:
            partition.commit(staging, str(directory), manifest, base_run="20261121T010000-old", storage=storage,
                             now=NOW)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            assert complete_ids(directory) == old_ids, step
            partition.discard_staging(str(directory), manifest["run_id"])  # what the failed launcher does
            assert leftovers(directory) == [], (step, leftovers(directory))
        else:  # the fault hit the clean-up after the publish: the new partition is complete
            assert complete_ids(directory) == new_ids, step
        assert_readers_see_only_committed_shards(root, directory)
        later, later_manifest, later_ids = stage_run(directory, "20261121T030000-next", 1)
        partition.commit(later, str(directory), later_manifest, base_run=partition.committed_run(str(directory)),
                         now=NOW)
        assert complete_ids(directory) == later_ids and leftovers(directory) == [], step
        assert sorted(os.listdir(directory)) == sorted([partition.SUCCESS, partition.MANIFEST, partition.ERRORS_DIR,
                                                        "labels-00000-of-00001.parquet"])


def test_a_full_disk_while_writing_the_lock_leaves_no_temporary_lock_file(tmp_path, monkeypatch):
    committed(tmp_path, "20261121T010000-old")
    staging, manifest, _ = stage_run(tmp_path, "20261121T020000-new", 1)
    real_open = open

    def full_disk_for_lock_files(path, mode="r", *args, **kwargs):
        if str(path).startswith(str(tmp_path / partition.LOCK)) and "w" in mode:
            handle = real_open(path, mode, *args, **kwargs)  # created, then the write fails
            handle.close()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_disk_for_lock_files)
    with pytest.raises(OSError):
        partition.commit(staging, str(tmp_path), manifest, base_run="20261121T010000-old", now=NOW)
    monkeypatch.undo()
    assert not [name for name in os.listdir(tmp_path) if name.startswith(partition.LOCK)]
    partition.discard_staging(str(tmp_path), manifest["run_id"])
    assert leftovers(tmp_path) == []


KILL_MID_COMMIT = """
import os, signal, sys
from tests.test_commit import FaultyStorage, stage_run
from transforms import partition

directory = sys.argv[1]
staging, manifest, ids = stage_run(directory, "20261121T020000-dead", 3)
def die_after_first_move_in(step, op, args):
    if op == "rename" and str(args[0]).startswith(staging) and os.listdir(directory).count(
            "labels-00000-of-00003.parquet"):
        os.kill(os.getpid(), signal.SIGKILL)
partition.commit(staging, directory, manifest, base_run=sys.argv[2], storage=FaultyStorage(die_after_first_move_in))
"""


def test_the_lock_of_a_process_that_was_killed_mid_commit_is_taken_over_at_once(tmp_path):
    root, directory = tmp_path, tmp_path / DT
    old_ids = committed(directory, "20261121T010000-old", shards=2)
    child = subprocess.Popen([sys.executable, "-c", KILL_MID_COMMIT, str(directory), "20261121T010000-old"],
                             env={**os.environ, "PYTHONPATH": os.getcwd()}, stderr=subprocess.PIPE, text=True)
    assert child.wait(timeout=120) == -signal.SIGKILL, child.stderr.read()
    held = json.loads((directory / partition.LOCK).read_text())
    assert held["run_id"] == "20261121T020000-dead" and held["owner"]["pid"] == child.pid
    assert complete_ids(directory) is None  # mid-commit: no _SUCCESS
    assert_readers_see_only_committed_shards(root, directory)
    # The next run, seconds later (not 30 minutes), finishes the dead commit at launch
    # (pipelines/labeling.py), then commits its own over it.
    assert partition.recover(str(directory)) == "20261121T020000-dead"
    dead_ids = complete_ids(directory)
    assert dead_ids is not None and dead_ids != old_ids and leftovers(directory) == []
    staging, manifest, new_ids = stage_run(directory, "20261121T020500-next", 1)
    partition.commit(staging, str(directory), manifest, base_run=partition.committed_run(str(directory)))
    assert complete_ids(directory) == new_ids
    assert leftovers(directory) == []
    assert_readers_see_only_committed_shards(root, directory)


def lock_held_elsewhere(directory, locked_at, beat=None):
    staging, manifest, _ = stage_run(directory, "20261121T020000-away", 1)
    journal = partition.plan(staging, str(directory), manifest, partition.Storage())
    owner = {**liveness.owner_record(), "host": "another-machine"}
    (directory / partition.LOCK).write_text(json.dumps({**journal, "locked_at": locked_at.isoformat(), "owner": owner}))
    if beat is not None:
        (directory / partition.LOCK_HEARTBEAT).write_text(json.dumps({"run_id": "20261121T020000-away",
                                                                      "beat": beat.isoformat()}))


@pytest.mark.parametrize("silent_s, beat_ago_s, taken_over", [
    (30, None, False),  # just locked: alive as far as anyone can tell
    (partition.LOCK_PATIENCE_S + 5, None, True),  # no heartbeat since it locked
    (partition.LOCK_PATIENCE_S + 5, 5, False),  # still renewing its heartbeat
    (partition.LOCK_LEASE_S + 5, 5, True),  # the lease: the last resort, whatever the heartbeat
])
def test_a_lock_held_on_another_machine_is_taken_over_once_its_heartbeat_stops(tmp_path, silent_s, beat_ago_s,
                                                                              taken_over):
    now = datetime.now(timezone.utc)
    old_ids = committed(tmp_path, "20261121T010000-old")
    lock_held_elsewhere(tmp_path, now - timedelta(seconds=silent_s),
                        None if beat_ago_s is None else now - timedelta(seconds=beat_ago_s))
    recovered = partition.recover(str(tmp_path), now=now)  # what the next run does at launch
    assert recovered == ("20261121T020000-away" if taken_over else None)
    staging, manifest, new_ids = stage_run(tmp_path, "20261121T020500-next", 1)
    base = partition.committed_run(str(tmp_path))
    if taken_over:
        assert base == "20261121T020000-away"  # its journal rolled forward: all its staged files were there
        partition.commit(staging, str(tmp_path), manifest, base_run=base, now=now)
        assert complete_ids(tmp_path) == new_ids and leftovers(tmp_path) == []
    else:
        with pytest.raises(partition.ConcurrentRunError, match="another-machine, which still runs"):
            partition.commit(staging, str(tmp_path), manifest, base_run=base, now=now)
        assert complete_ids(tmp_path) == old_ids  # the other's commit (here: just locked) is left alone


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def make_staging(directory, run_id, owner=None, beat=None):
    path = partition.staging_dir(str(directory), run_id)
    os.makedirs(path)
    if owner is not None:
        with open(os.path.join(path, partition.OWNER), "w") as handle:
            json.dump({"owner": owner, "beat": beat.isoformat()}, handle)
    return path


def test_a_committing_run_deletes_the_staging_of_provably_dead_runs_only(tmp_path):
    now = datetime.now(timezone.utc)
    here = liveness.owner_record()
    recent = partition.new_run_id(now - timedelta(minutes=20), "x")[:15]
    kept = {
        "live": make_staging(tmp_path, f"{recent}-live", here, now),
        "remote job": make_staging(tmp_path, f"{recent}-remote"),  # no owner: only its age tells
        "beating elsewhere": make_staging(tmp_path, f"{recent}-beating", {**here, "host": "other"},
                                          now - timedelta(seconds=20)),
    }
    gone = {
        "dead process": make_staging(tmp_path, f"{recent}-dead", {**here, "pid": dead_pid()}, now),
        "pid reused": make_staging(tmp_path, f"{recent}-reused", {**here, "process_started": 1.0}, now),
        "silent elsewhere": make_staging(tmp_path, f"{recent}-silent", {**here, "host": "other"},
                                         now - timedelta(seconds=partition.STAGING_PATIENCE_S + 5)),
        "abandoned": make_staging(tmp_path, partition.new_run_id(now - timedelta(days=4), "old")),
    }
    staging, manifest, ids = stage_run(tmp_path, partition.new_run_id(now, "mine"), 1)
    partition.commit(staging, str(tmp_path), manifest, now=now)
    assert complete_ids(tmp_path) == ids
    assert {name for name, path in kept.items() if os.path.isdir(path)} == set(kept)
    assert {name for name, path in gone.items() if os.path.exists(path)} == set()


def test_process_gone_is_proven_only_on_this_machine():
    here = liveness.owner_record()
    assert here["host"] == socket.gethostname() and not liveness.process_gone(here)
    assert liveness.process_gone({**here, "pid": dead_pid()})
    assert not liveness.process_gone({**here, "pid": dead_pid(), "host": "elsewhere"})
    assert not liveness.process_gone({**here, "pid": dead_pid(), "boot": "before-a-reboot"})
    assert not liveness.process_gone(None)


def test_a_stop_raised_inside_a_garbage_collection_callback_is_not_lost(capfd):
    """A signal whose handler runs inside a weakref callback (garbage collection runs them between
    any two lines, and Beam's runner makes much garbage): Python swallows what the callback raises
    ("Exception ignored in"), so the run would carry on to its end; the stop comes again instead."""
    import time
    import weakref

    class Garbage:
        pass

    with stopping.handled(), pytest.raises(stopping.Stopped) as stopped:
        garbage = Garbage()
        weakref.finalize(garbage, lambda: os.kill(os.getpid(), signal.SIGTERM))  # handled inside the callback
        del garbage
        started = time.monotonic()
        while time.monotonic() - started < 10:  # the run's ordinary work
            time.sleep(0.01)
    assert stopped.value.exit_code == 143 and time.monotonic() - started < 5
    assert "Traceback" not in capfd.readouterr().err
