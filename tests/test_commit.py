"""The partition commit (transforms/partition.py) under the ways production fails: the process
killed before/between/after every file operation, an error at every step (an unwritable
_errors/ among them), two runs of one partition racing in threads and in forced
interleavings, abandoned and live staging directories, corrupt manifests. After each, a reader
that waits for _SUCCESS (pyarrow.dataset, which skips _-prefixed paths as Hive readers do) sees
all of one run's rows exactly once, or no _SUCCESS."""
from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from transforms import partition

NOW = datetime(2026, 11, 21, 3, 0, tzinfo=timezone.utc)
LATER = NOW + timedelta(seconds=partition.LOCK_LEASE_S + 1)
MUTATIONS = ("create_exclusive", "rename", "write", "write_text", "delete", "delete_tree")


class Killed(BaseException):
    """The process died: no except-Exception handler runs."""


class FaultyStorage(partition.Storage):
    """Storage that calls hook(step, operation, args) before every mutating operation."""

    def __init__(self, hook=None):
        self.hook = hook or (lambda step, op, args: None)
        self.steps = 0

    def _step(self, op, *args):
        self.steps += 1
        self.hook(self.steps, op, args)


for _op in MUTATIONS:
    def _wrapped(self, *args, _op=_op):
        self._step(_op, *args)
        return getattr(partition.Storage, _op)(self, *args)
    setattr(FaultyStorage, _op, _wrapped)


def fail_at(step, error):
    def hook(current, op, args):
        if current == step:
            raise error
    return hook


def stage_run(directory, run_id, shards, letters=1):
    """A finished run's staging directory: `shards` Parquet files of 3 rows, `letters` dead
    letters; returns (staging, manifest, ids)."""
    staging = partition.staging_dir(str(directory), run_id)
    os.makedirs(os.path.join(staging, partition.ERRORS_DIR), exist_ok=True)
    ids = []
    for shard in range(shards):
        shard_ids = [f"{run_id}-{shard}-{i}" for i in range(3)]
        ids += shard_ids
        pq.write_table(pa.table({"id": shard_ids}),
                       os.path.join(staging, f"labels-{shard:05d}-of-{shards:05d}{partition.STAGED_SHARD_SUFFIX}"))
    with open(os.path.join(staging, partition.ERRORS_DIR, "errors-00000-of-00001.jsonl"), "w") as handle:
        for i in range(letters):
            handle.write(json.dumps({"source": "in.jsonl", "position": i, "reason": "invalid JSON: x",
                                     "raw": run_id}) + "\n")
    found = partition.count_outputs(staging, staged=True)
    manifest = {"run_id": run_id, "records_read": len(ids) + letters, **found}
    return staging, manifest, sorted(ids)


def complete_ids(directory):
    """What a reader that waits for _SUCCESS sees: None, or the sorted ids of every row."""
    if not os.path.exists(os.path.join(directory, partition.SUCCESS)):
        return None
    if not any(name.endswith(".parquet") for name in os.listdir(directory)):
        return []
    return sorted(ds.dataset(str(directory), format="parquet").to_table(columns=["id"]).column("id").to_pylist())


def leftovers(directory):
    return sorted(name for name in os.listdir(directory)
                  if name.startswith((partition.STAGING_PREFIX, partition.BACKUP_PREFIX, partition.LOCK)))


def committed(directory, run_id, shards=2, letters=1):
    staging, manifest, ids = stage_run(directory, run_id, shards, letters)
    partition.commit(staging, str(directory), manifest, now=NOW)
    return ids


def total_steps(tmp_path, old_shards, new_shards):
    directory = tmp_path / "count"
    base = None
    if old_shards:
        committed(directory, "20261121T010000-old", old_shards)
        base = "20261121T010000-old"
    staging, manifest, _ = stage_run(directory, "20261121T020000-new", new_shards)
    storage = FaultyStorage()
    partition.commit(staging, str(directory), manifest, base_run=base, storage=storage, now=NOW)
    return storage.steps


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old_shards=st.integers(0, 3), new_shards=st.integers(0, 3), old_letters=st.integers(0, 2),
       at=st.floats(0, 1), kill=st.booleans(), retry_same_run=st.booleans())
def test_a_commit_stopped_at_any_step_leaves_one_complete_partition(
        tmp_path_factory, old_shards, new_shards, old_letters, at, kill, retry_same_run):
    tmp_path = tmp_path_factory.mktemp("commit")
    steps = total_steps(tmp_path, old_shards, new_shards)
    step = 1 + int(at * steps)  # steps + 1: stopped after the last operation, i.e. not at all
    directory = tmp_path / "part"
    old_ids, base = None, None
    if old_shards:
        old_ids = committed(directory, "20261121T010000-old", old_shards, old_letters)
        base = "20261121T010000-old"
    staging, manifest, new_ids = stage_run(directory, "20261121T020000-new", new_shards)

    storage = FaultyStorage(fail_at(step, Killed() if kill else PermissionError("injected")))
    try:
        partition.commit(staging, str(directory), manifest, base_run=base, storage=storage, now=NOW)
        stopped = False
    except (Killed, PermissionError):
        stopped = True
    seen = complete_ids(directory)
    assert seen in ((None, old_ids, new_ids) if kill else (old_ids, new_ids)), (step, steps)
    if not stopped:  # committed; an error in the clean-up after the publish is only a warning,
        assert seen == new_ids  # and what it left is deleted by the next run that commits
        later, later_manifest, later_ids = stage_run(directory, "20261121T030000-next", 1)
        partition.commit(later, str(directory), later_manifest, base_run=manifest["run_id"], now=NOW)
        assert complete_ids(directory) == later_ids and leftovers(directory) == []
        return
    if stopped and not kill and seen == old_ids and old_ids is not None:
        assert json.load(open(directory / partition.MANIFEST))["run_id"] == base

    # Dataflow retries the commit step of the same run, or a later run recovers a dead one.
    if retry_same_run:
        partition.commit(staging, str(directory), manifest, base_run=base, now=NOW)
        assert complete_ids(directory) == new_ids
    else:
        partition.recover(str(directory), now=LATER)
        assert complete_ids(directory) in (old_ids, new_ids) if old_ids else complete_ids(directory) in (None, new_ids)
    assert not [name for name in leftovers(directory)
                if name.startswith((partition.BACKUP_PREFIX, partition.LOCK))]


def test_an_unwritable_errors_folder_keeps_the_previous_partition(tmp_path):
    old_ids = committed(tmp_path, "20261121T010000-old", shards=3, letters=2)
    staging, manifest, new_ids = stage_run(tmp_path, "20261121T020000-new", shards=1)

    def errors_unwritable(step, op, args):
        if op == "rename" and any(f"/{partition.ERRORS_DIR}/" in str(a) for a in args):
            raise PermissionError(f"{args[0]}: read-only")

    with pytest.raises(PermissionError):
        partition.commit(staging, str(tmp_path), manifest, base_run="20261121T010000-old",
                         storage=FaultyStorage(errors_unwritable), now=NOW)
    assert complete_ids(tmp_path) == old_ids
    assert partition.read_manifest(str(tmp_path))["run_id"] == "20261121T010000-old"
    assert len(os.listdir(tmp_path / partition.ERRORS_DIR)) == 1
    assert leftovers(tmp_path) == [os.path.basename(staging)]  # the staged run, kept for a retry
    partition.commit(staging, str(tmp_path), manifest, base_run="20261121T010000-old", now=NOW)
    assert complete_ids(tmp_path) == new_ids and leftovers(tmp_path) == []


@pytest.mark.parametrize("first", ["b", "c"])
def test_two_runs_one_after_the_other_the_second_fails_loudly(tmp_path, first):
    old_ids = committed(tmp_path, "20261121T010000-aaaa")
    runs = {name: stage_run(tmp_path, f"20261121T02000{i}-{name * 4}", 2) for i, name in enumerate("bc")}
    second = "c" if first == "b" else "b"
    partition.commit(runs[first][0], str(tmp_path), runs[first][1], base_run="20261121T010000-aaaa", now=NOW)
    with pytest.raises(partition.ConcurrentRunError, match="another run .* committed"):
        partition.commit(runs[second][0], str(tmp_path), runs[second][1], base_run="20261121T010000-aaaa", now=NOW)
    assert complete_ids(tmp_path) == runs[first][2] != old_ids
    assert leftovers(tmp_path) == []


def test_a_run_that_finds_another_committing_fails_loudly_at_every_step_of_the_other(tmp_path):
    steps = total_steps(tmp_path, 2, 2)
    for step in range(1, steps + 1):
        directory = tmp_path / f"step{step}"
        old_ids = committed(directory, "20261121T010000-aaaa")
        (b_staging, b_manifest, b_ids), (c_staging, c_manifest, c_ids) = (
            stage_run(directory, f"20261121T02000{i}-{name * 4}", 2) for i, name in enumerate("bc"))
        outcome = []

        def other_commits_now(current, op, args):
            if current == step:
                try:
                    partition.commit(c_staging, str(directory), c_manifest, base_run="20261121T010000-aaaa",
                                     now=NOW)
                    outcome.append("c committed")
                except partition.ConcurrentRunError as exc:
                    outcome.append(str(exc))

        try:
            partition.commit(b_staging, str(directory), b_manifest, base_run="20261121T010000-aaaa",
                             storage=FaultyStorage(other_commits_now), now=NOW)
            outcome.append("b committed")
        except partition.ConcurrentRunError as exc:
            outcome.append(str(exc))
        assert len(outcome) == 2 and sum(o in ("b committed", "c committed") for o in outcome) == 1, outcome
        assert any(o.startswith("another run") for o in outcome), outcome
        winner = b_ids if "b committed" in outcome else c_ids
        assert complete_ids(directory) == winner != old_ids, (step, outcome)
        assert leftovers(directory) == [], (step, leftovers(directory))


def test_runs_racing_in_threads_commit_exactly_one(tmp_path):
    for attempt in range(25):
        directory = tmp_path / f"race{attempt}"
        committed(directory, "20261121T010000-aaaa")
        staged = [stage_run(directory, f"20261121T0200{i:02d}-{i:04d}", 1 + i % 3) for i in range(4)]
        outcomes, barrier = [None] * 4, threading.Barrier(4)

        def go(i):
            barrier.wait()
            try:
                partition.commit(staged[i][0], str(directory), staged[i][1], base_run="20261121T010000-aaaa")
                outcomes[i] = "committed"
            except partition.ConcurrentRunError:
                outcomes[i] = "lost"
            except Exception as exc:  # noqa: BLE001 - any other outcome fails the test below
                outcomes[i] = repr(exc)

        threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["committed", "lost", "lost", "lost"], outcomes
        assert complete_ids(directory) == staged[outcomes.index("committed")][2]
        assert leftovers(directory) == []


def test_only_abandoned_staging_directories_are_deleted(tmp_path):
    live = partition.staging_dir(str(tmp_path), partition.new_run_id(NOW - timedelta(hours=20), "live"))
    dead = partition.staging_dir(str(tmp_path), partition.new_run_id(NOW - timedelta(days=4), "dead"))
    for path in (live, dead):
        os.makedirs(path)
    committed(tmp_path, "20261121T020000-bbbb")
    assert os.path.isdir(live) and not os.path.exists(dead)


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_a_corrupt_manifest_means_incomplete_with_a_warning(tmp_path, content, caplog):
    committed(tmp_path, "20261121T010000-aaaa")
    (tmp_path / partition.MANIFEST).write_bytes(content)
    assert partition.read_manifest(str(tmp_path)) is None
    assert partition.committed_run(str(tmp_path)) is None
    assert "treating the partition as incomplete" in caplog.text
    staging, manifest, ids = stage_run(tmp_path, "20261121T020000-bbbb", 1)
    partition.commit(staging, str(tmp_path), manifest, now=NOW)  # a rerun replaces it
    assert complete_ids(tmp_path) == ids


def test_success_is_refused_when_the_files_are_not_those_the_manifest_lists(tmp_path):
    staging, manifest, _ = stage_run(tmp_path, "20261121T020000-bbbb", 2)
    manifest["files"] = {**manifest["files"], "labels-00000-of-00002.parquet": 4}
    with pytest.raises(partition.VerificationError, match="has 3 rows, the manifest says 4"):
        partition.commit(staging, str(tmp_path), manifest, now=NOW)
    assert complete_ids(tmp_path) is None and leftovers(tmp_path) == [os.path.basename(staging)]
    manifest["files"] = {"labels-00009-of-00010.parquet": 3, **manifest["files"]}
    del manifest["files"]["labels-00000-of-00002.parquet"]
    with pytest.raises(partition.VerificationError, match=r"files its manifest lists: labels-00000-of-00002.parquet "
                                                          r"not listed; labels-00009-of-00010.parquet missing$"):
        partition.commit(staging, str(tmp_path), manifest, now=NOW)


def test_finish_manifest_states_throughput_and_cost():
    base = {"run_id": "r", "started": "2026-11-21T03:00:00+00:00", "checkpoints": {"sentiment": {}},
            "cost_per_hour_usd": 2.0, "cost_workers": 3}
    manifest = partition.finish_manifest(base, {"records_read": 7200, "inferences_sentiment": 7000},
                                         {"rows_written": 7000, "dead_lettered": 200, "files": {}},
                                         NOW + timedelta(minutes=30))
    assert manifest["wall_seconds"] == 1800 and manifest["posts_per_second"] == 4.0
    assert manifest["cost_usd"] == 3.0  # 3 workers x $2/h x 0.5 h
    assert manifest["cost_per_million_posts_usd"] == pytest.approx(3.0 / 7200 * 1e6, rel=1e-6)
    assert manifest["inferences"] == {"sentiment": 7000}
    no_price = partition.finish_manifest({**base, "cost_per_hour_usd": None}, {}, {"files": {}}, NOW)
    assert no_price["cost_usd"] is None and no_price["cost_per_million_posts_usd"] is None


def test_a_retried_commit_step_finishes_its_own_dead_commit_without_the_staged_files(tmp_path):
    old_ids = committed(tmp_path, "20261121T010000-aaaa", shards=2)
    staging, manifest, new_ids = stage_run(tmp_path, "20261121T020000-bbbb", shards=3)

    def die_at_second_move_in(step, op, args):
        if op == "rename" and str(args[0]).startswith(staging) and os.path.exists(
                os.path.join(str(tmp_path), "labels-00000-of-00003.parquet")):
            raise Killed()

    with pytest.raises(Killed):
        partition.commit(staging, str(tmp_path), manifest, base_run="20261121T010000-aaaa",
                         storage=FaultyStorage(die_at_second_move_in), now=NOW)
    assert complete_ids(tmp_path) is None and old_ids != new_ids
    assert partition.resume(str(tmp_path), "20261121T020000-cccc") is None  # another run's lock
    assert partition.resume(str(tmp_path), "20261121T020000-bbbb")["run_id"] == "20261121T020000-bbbb"
    assert complete_ids(tmp_path) == new_ids and leftovers(tmp_path) == []


def test_the_commit_step_retried_after_a_lost_race_still_names_the_other_run(tmp_path):
    from pipelines.beam_steps import CommitPartitionFn

    winner_ids = committed(tmp_path, "20261121T020000-bbbb")
    staging, manifest, _ = stage_run(tmp_path, "20261121T020000-cccc", 1)
    fn = CommitPartitionFn(staging, str(tmp_path), {**manifest, "started": NOW.isoformat(), "checkpoints": {}},
                           base_run=None)
    for _attempt in range(2):  # the runner retries a failed step
        with pytest.raises(partition.ConcurrentRunError, match=r"another run \(20261121T020000-bbbb\) committed"):
            list(fn.process(None, [], {"records_read": 4}))
    assert complete_ids(tmp_path) == winner_ids and leftovers(tmp_path) == []


@pytest.mark.parametrize("which", [0, 1, 2])
def test_an_object_store_move_stopped_after_its_copy_is_undone(tmp_path, which):
    """gs:// and s3:// move by copy then delete; a move that fails after the copy leaves both."""
    import shutil

    old_ids = committed(tmp_path, "20261121T010000-aaaa", shards=1)
    staging, manifest, _ = stage_run(tmp_path, "20261121T020000-bbbb", shards=3)
    moved_in = []

    class CopyThenFail(partition.Storage):
        def rename(self, source, target):
            if source.startswith(staging):
                if len(moved_in) == which:
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    shutil.copyfile(source, target)
                    raise OSError("delete after copy failed")
                moved_in.append(source)
            return super().rename(source, target)

    with pytest.raises(OSError, match="delete after copy failed"):
        partition.commit(staging, str(tmp_path), manifest, base_run="20261121T010000-aaaa",
                         storage=CopyThenFail(), now=NOW)
    assert complete_ids(tmp_path) == old_ids
    assert sorted(os.listdir(tmp_path)) == sorted([partition.SUCCESS, partition.MANIFEST, partition.ERRORS_DIR,
                                                   "labels-00000-of-00001.parquet",
                                                   os.path.basename(staging)])


def test_a_suspect_run_commits_without_success_and_stays_the_committed_run(tmp_path):
    """Exit 3: files and manifest (with its problem) in place, no _SUCCESS; a retried commit of it
    is done, a run launched over it replaces it, and a run that started before it lost the race."""
    staging, manifest, ids = stage_run(tmp_path, "20261121T030000-suspect", shards=1, letters=5)
    manifest["problem"] = "5 of 8 records read (62%) were dead-lettered"
    partition.commit(staging, str(tmp_path), manifest, base_run=None, now=NOW)
    assert complete_ids(str(tmp_path)) is None and partition.read_manifest(str(tmp_path)) is None
    assert partition.committed_run(str(tmp_path)) == manifest["run_id"]
    assert sorted(pq.read_table(os.path.join(tmp_path, "labels-00000-of-00001.parquet"))["id"].to_pylist()) == ids
    partition.commit(staging, str(tmp_path), manifest, base_run=None, now=NOW)  # a retry: already done
    assert partition.committed_run(str(tmp_path)) == manifest["run_id"]
    late, late_manifest, _ = stage_run(tmp_path, "20261121T025900-late", shards=1)
    with pytest.raises(partition.ConcurrentRunError):  # launched before the suspect run committed
        partition.commit(late, str(tmp_path), late_manifest, base_run=None, now=NOW)
    rerun, rerun_manifest, rerun_ids = stage_run(tmp_path, "20261121T040000-rerun", shards=2)
    partition.commit(rerun, str(tmp_path), rerun_manifest, base_run=manifest["run_id"], now=NOW)
    assert complete_ids(str(tmp_path)) == rerun_ids
