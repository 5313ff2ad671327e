"""Several workers on one machine: the DirectRunner in multi_processing mode with two worker
processes labels a corpus with exactly the rows of the in-memory mode.

Worker subprocesses get the transforms pickled and load the models themselves, as Dataflow
workers do, so this is the local proof that the pipeline survives that trip.
"""
from __future__ import annotations

import glob
import gzip
import itertools
import json
import logging
import math
import os
import random
import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from pipelines.label_corpus import run

CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "corpora", "social_posts.jsonl.gz")
N_POSTS = 200
WORKER_LOG_RELAY = "apache_beam.runners.portability.local_job_service"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sample_posts(n: int = N_POSTS) -> list[dict]:
    """The first n posts of the shared corpus when it is there, else generated ones."""
    if os.path.exists(CORPUS):
        with gzip.open(CORPUS, "rt", encoding="utf-8") as handle:
            posts = [json.loads(line) for line in itertools.islice(handle, n)]
        return [{"id": p["id"], "text": p["text"]} for p in posts]
    rng = random.Random(7)
    words = "the vote was a great day for the economy but prices are bad @user http://x.co 😂 酒店 很好".split()
    return [{"id": f"g{i:04d}", "text": " ".join(rng.choices(words, k=rng.randint(1, 40)))} for i in range(n)]


def read_rows(output_dir: str) -> list[dict]:
    files = sorted(glob.glob(os.path.join(output_dir, "labels-*.parquet")))
    assert files, f"no Parquet written under {output_dir}"
    rows = [row for path in files for row in pq.read_table(path).to_pylist()]
    return sorted(rows, key=lambda row: row["id"])


def assert_same_rows(left: list[dict], right: list[dict], tol: float = 1e-5) -> None:
    assert [r["id"] for r in left] == [r["id"] for r in right]
    for a, b in zip(left, right):
        assert a.keys() == b.keys()
        for column in a:
            x, y = a[column], b[column]
            if isinstance(x, float) and isinstance(y, float):
                assert math.isclose(x, y, abs_tol=tol), (a["id"], column, x, y)
            else:
                assert x == y, (a["id"], column, x, y)


@pytest.fixture(scope="module")
def posts_file(tmp_path_factory) -> tuple[str, int]:
    posts = sample_posts()
    posts.append({"id": "zz-empty", "text": ""})  # a row with no text: label columns stay null
    path = tmp_path_factory.mktemp("posts") / "posts.jsonl"
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in posts), encoding="utf-8")
    return str(path), len(posts)


def label(posts: str, models_file: str, output: str, mode_args: list[str]) -> list[dict]:
    run(["--input", posts, "--output", output, "--models", models_file, "--device", "cpu",
         "--batch-size", "32", "--all-languages", *mode_args])
    return read_rows(output)


def test_two_worker_processes_give_the_in_memory_rows(posts_file, tiny_models_file, tmp_path, caplog):
    posts, n_posts = posts_file
    in_memory = label(posts, tiny_models_file, str(tmp_path / "in_memory"),
                      ["--direct_running_mode", "in_memory"])
    caplog.set_level(logging.INFO, logger=WORKER_LOG_RELAY)
    two_workers = label(posts, tiny_models_file, str(tmp_path / "multi"),
                        ["--direct_running_mode", "multi_processing", "--direct_num_workers", "2"])
    # Worker subprocesses relay their logs through the runner: two SDK harness processes started.
    relayed = [r.getMessage() for r in caplog.records if r.name == WORKER_LOG_RELAY]
    assert sum("sdk harness starting" in m for m in relayed) == 2

    assert len(in_memory) == n_posts
    assert len({r["id"] for r in in_memory}) == n_posts
    labeled = [r for r in in_memory if r["clean_text"]]
    assert labeled and all(r["sentiment"] in ("negative", "positive") for r in labeled)
    assert all(1 <= r["stars"] <= 5 for r in labeled)
    empty = next(r for r in in_memory if r["id"] == "zz-empty")
    assert empty["sentiment"] is None and empty["stars"] is None and empty["emotions"] is None
    assert_same_rows(in_memory, two_workers)


PROGRESS = re.compile(r"^\d\d:\d\d:\d\d one of 2 worker processes \(pid (\d+)\): ([\d,]+) posts (read|labeled) in "
                      r"\d+ s \([\d,.]+ posts/s since (reading|labeling) began\)$")


def test_two_worker_processes_print_only_the_jobs_lines_and_each_its_own_count(tiny_checkpoints, tmp_path):
    """As a user runs it, installed without the gcp extra (so Beam warns "apitools not found" on
    import, which made each worker print all its INFO lines): stderr holds the job's own lines,
    and each progress line names the worker process whose count it is, with no time left."""
    n_posts = 40
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in sample_posts(n_posts)), encoding="utf-8")
    no_apitools = tmp_path / "no_apitools" / "apitools"
    no_apitools.mkdir(parents=True)
    (no_apitools / "__init__.py").write_text("raise ImportError('apitools is not installed')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(no_apitools.parent), ROOT])}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "pipelines.label_corpus", "--input", str(posts), "--output", str(tmp_path / "out"),
         "--model", f"sentiment={tiny_checkpoints['sentiment']}", "--only", "sentiment", "--all-languages",
         "--device", "cpu", "--batch-size", "8", "--progress-every", "0",  # a line after each sub-batch
         "--direct_running_mode", "multi_processing", "--direct_num_workers", "2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = launcher.communicate(timeout=240)
    finally:
        launcher.kill()
    assert launcher.returncode == 0, stderr
    lines = stderr.splitlines()
    noise = [line for line in lines if any(word in line for word in
                                           ("INFO", "WARNING", "apitools", "Loading weights", "semi_persistent"))]
    assert not noise, stderr
    assert f"done: {n_posts:,} posts read, {n_posts:,} rows written" in stderr
    progress = [line for line in lines if " posts read in " in line or " posts labeled in " in line]
    matched = [PROGRESS.match(line) for line in progress]
    assert progress and all(matched), progress  # each names its process; none gives a time left
    labeled = {}
    for match in matched:
        pid, count = int(match[1]), int(match[2].replace(",", ""))
        assert pid != launcher.pid
        if match[3] == "labeled":
            labeled[pid] = max(labeled.get(pid, 0), count)
    assert labeled and len(labeled) <= 2
    assert sum(labeled.values()) <= n_posts  # each counts only its own posts
