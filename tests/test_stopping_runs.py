"""Whole runs stopped the way schedulers and terminals stop them, and one that fills its disk:
a real SIGINT mid-run (label_corpus in a child process), a real SIGTERM mid-commit, and a run
whose output is a tmpfs too small for its shards. Each asserts the exit, the one line printed,
and what readers of the partition see (tests/test_stopping.py's globbing readers)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.test_commit import complete_ids, leftovers, stage_run
from tests.test_stopping import DT, assert_readers_see_only_committed_shards
from transforms import partition, stopping



@pytest.fixture()
def dataset(tmp_path):
    """posts.jsonl (600 posts), and a dataset root whose partition holds an earlier run."""
    posts = tmp_path / "posts.jsonl"
    with open(posts, "w") as handle:
        for i in range(600):
            handle.write(json.dumps({"id": f"p{i}", "text": f"post {i} about the economy and the vote " * 3}) + "\n")
    root = tmp_path / "labels"
    directory = root / DT
    staging, manifest, old_ids = stage_run(directory, "20261121T010000-old", 2)
    partition.commit(staging, str(directory), manifest)
    return posts, root, directory, old_ids


def child(posts, directory, checkpoint):
    argv = ["--input", str(posts), "--output", str(directory), "--only", "sentiment", "--model",
            f"sentiment={checkpoint}", "--num-shards", "2"]
    return subprocess.Popen([sys.executable, "-m", "pipelines.label_corpus", *argv], stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})


def test_ctrl_c_mid_run_exits_130_with_one_line_and_leaves_the_old_partition(dataset, tiny_checkpoints):
    posts, root, directory, old_ids = dataset
    job = child(posts, directory, tiny_checkpoints["sentiment"])
    for line in job.stderr:
        if " labeling " in line:  # the pipeline starts: reading, cleaning, labeling
            time.sleep(1)
            sent = time.monotonic()
            job.send_signal(signal.SIGINT)
            break
    after = job.stderr.read()
    assert job.wait(timeout=120) == 130, after
    assert time.monotonic() - sent < 60  # seconds on a quiet machine; this one is shared
    assert "Traceback" not in after and "ERROR" not in after, after
    assert after.strip().splitlines() == [
        f"label_corpus: stopped by SIGINT: {directory} holds its previous complete partition unchanged "
        f"(run 20261121T010000-old, 6 rows, _SUCCESS); nothing of this run was committed"], after
    assert complete_ids(directory) == old_ids and leftovers(directory) == []
    assert_readers_see_only_committed_shards(root, directory)


def test_sigterm_mid_commit_finishes_the_commit_then_exits_143(dataset, tiny_checkpoints, monkeypatch, capsys):
    """In this process (main(), as the console script runs it): a real SIGTERM once the first
    staged file has moved into the partition."""
    from pipelines.label_corpus import main

    posts, root, directory, old_ids = dataset
    real_rename, sent = partition.Storage.rename, []

    def rename(self, source, target):
        real_rename(self, source, target)
        if partition.STAGING_PREFIX in source and not sent:
            sent.append(source)
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(partition.Storage, "rename", rename)
    code = main(["--input", str(posts), "--output", str(directory), "--only", "sentiment", "--model",
                 f"sentiment={tiny_checkpoints['sentiment']}", "--num-shards", "2"])
    err = capsys.readouterr().err
    assert code == 143 and sent, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (f"label_corpus: stopped by SIGTERM: {directory} holds this run's complete "
                                            f"partition (600 rows, _SUCCESS): it was committed before the stop")
    assert complete_ids(directory) == sorted(f"p{i}" for i in range(600))
    assert leftovers(directory) == []  # lock released, staging and backup gone
    assert_readers_see_only_committed_shards(root, directory)
    assert signal.getsignal(signal.SIGTERM) is not None and stopping.requested() is None  # handlers put back


@pytest.fixture()
def small_disk(tmp_path):
    """A tmpfs of 24 KiB (room for the earlier partition, not for 600 labeled posts)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or done.returncode}): "
                    f"ENOSPC is tested with the fault-injecting storage in tests/test_stopping.py")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_run_that_fills_the_disk_removes_its_staging_and_leaves_the_old_partition(tmp_path, small_disk,
                                                                                   tiny_checkpoints):
    from pipelines.label_corpus import run

    posts = tmp_path / "posts.jsonl"
    with open(posts, "w") as handle:
        for i in range(600):
            handle.write(json.dumps({"id": f"p{i}", "text": f"post {i} about the economy and the vote " * 3}) + "\n")
    root, directory = small_disk, small_disk / DT
    staging, manifest, old_ids = stage_run(directory, "20261121T010000-old", 1)
    partition.commit(staging, str(directory), manifest)
    with pytest.raises(Exception, match="No space left on device|Errno 28"):
        run(["--input", str(posts), "--output", str(directory), "--only", "sentiment",
             "--model", f"sentiment={tiny_checkpoints['sentiment']}"])
    assert complete_ids(directory) == old_ids
    assert leftovers(directory) == []  # its staging (Beam's temporary files in it) is gone: the retry has room
    assert sorted(os.listdir(directory)) == sorted([partition.SUCCESS, partition.MANIFEST, partition.ERRORS_DIR,
                                                    "labels-00000-of-00001.parquet"])
    assert_readers_see_only_committed_shards(root, directory)


def test_a_run_stopped_before_writing_leaves_no_output_directory_it_created(tmp_path, tiny_checkpoints,
                                                                            monkeypatch, capsys):
    """In this process: a real SIGTERM once the first posts are labeled, into an output directory
    that did not exist (nor its parent): both are gone after the stop; a directory that was there
    before, or holds anything, stays."""
    from pipelines import beam_steps
    from pipelines.label_corpus import main

    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps({"id": f"p{i}", "text": f"post {i} about the vote"}) + "\n"
                             for i in range(40)))
    there = tmp_path / "there"
    there.mkdir()
    output = there / "labels" / DT
    real_tick, sent = beam_steps.ProgressFn.tick, []

    def tick(self, posts):
        real_tick(self, posts)
        if self.verb == "labeled" and not sent:
            sent.append(posts)
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(beam_steps.ProgressFn, "tick", tick)
    code = main(["--input", str(posts), "--output", str(output), "--only", "sentiment", "--model",
                 f"sentiment={tiny_checkpoints['sentiment']}", "--batch-size", "8"])
    err = capsys.readouterr().err
    assert code == 143 and sent, err
    assert "nothing of this run was committed" in err.strip().splitlines()[-1], err
    assert os.listdir(there) == []  # labels/ and labels/dt=.../ were this run's: removed; there/ was not
    keep = there / "keep"
    (keep / "a" / "b").mkdir(parents=True)
    (keep / "a" / "note.txt").write_text("x")
    partition.remove_empty((str(keep / "a" / "b"), str(keep / "a"), str(keep)))
    assert os.listdir(keep / "a") == ["note.txt"]  # stops at the first directory that holds anything
    assert partition.missing_directories(str(there / "x" / "y")) == (str(there / "x" / "y"), str(there / "x"))
