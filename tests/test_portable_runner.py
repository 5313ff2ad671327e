"""Dataflow's execution model on this machine: the job through Beam's PortableRunner with the job
service embedded in the launcher (--job_endpoint embed), its SDK harness in other processes (the
subprocess harness) or in a worker pool's (EXTERNAL): the pipeline travels as protos, the DoFns are
unpickled and the models loaded elsewhere, the counts reach the commit step. Each partition equals
the DirectRunner's. A worker pool whose Python lacks the project ends the job with one line naming
the failure and the fix, nothing committed (pipelines/labeling.py, wait_for_workers).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import sysconfig
import time
from contextlib import contextmanager

import pytest

from pipelines.label_corpus import run
from tests.test_multiworker import WORKER_LOG_RELAY, assert_same_rows, read_rows, sample_posts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORTABLE = ["--runner", "PortableRunner", "--job_endpoint", "embed"]
SUBPROCESS_HARNESS = ["--environment_type", "beam:env:harness_subprocess_python:v1",
                      "--environment_config", f"{sys.executable} -m apache_beam.runners.worker.sdk_worker_main"]
POOL_START_S = 60  # bounded wait for the worker pool's port
FAILED_RUN_LIMIT_S = 240  # a launcher that hangs fails the test here instead


@pytest.fixture(scope="module")
def posts(tmp_path_factory) -> str:
    rows = sample_posts(40) + [{"id": "zz-empty", "text": ""}]
    path = tmp_path_factory.mktemp("portable_posts") / "posts.jsonl"
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in rows), encoding="utf-8")
    return str(path)


def label(posts: str, models_file: str, output: str, beam_args: list[str]) -> list[dict]:
    run(["--input", posts, "--output", output, "--models", models_file, "--device", "cpu", "--batch-size", "16",
         "--all-languages", *beam_args])
    return read_rows(output)


@pytest.fixture(scope="module")
def direct_rows(posts, tiny_models_file, tmp_path_factory) -> list[dict]:
    return label(posts, tiny_models_file, str(tmp_path_factory.mktemp("direct") / "out"), [])


def assert_committed_alone(output: str) -> None:
    names = sorted(os.listdir(output))
    assert "_SUCCESS" in names and "_manifest.json" in names
    assert not [n for n in names if n.startswith(("_staging-", "_previous-", "_LOCK"))], names


def test_the_subprocess_harness_gives_the_direct_runners_rows(posts, tiny_models_file, direct_rows, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=WORKER_LOG_RELAY)
    output = str(tmp_path / "out")
    rows = label(posts, tiny_models_file, output, [*PORTABLE, *SUBPROCESS_HARNESS])
    relayed = [r.getMessage() for r in caplog.records if r.name == WORKER_LOG_RELAY]
    assert any("sdk harness starting" in m for m in relayed)  # an SDK harness process ran the job
    assert_same_rows(direct_rows, rows)
    assert len(rows) == 41 and any(r["sentiment"] for r in rows)
    assert_committed_alone(output)
    with open(os.path.join(output, "_manifest.json")) as handle:
        manifest = json.load(handle)
    assert manifest["records_read"] == manifest["rows_written"] == 41  # the counts reached the commit step


def bare_python(folder, with_beam: bool) -> str:
    """A Python environment without this project (a venv of this interpreter, no site packages);
    with_beam: Beam and every requirement seen through a .pth line (which runs none of the .pth
    files there, so this project's editable install is not seen either). Returns its bin folder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    if with_beam:
        site = subprocess.run([str(folder / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True, timeout=60).stdout.strip()
        with open(os.path.join(site, "project-requirements.pth"), "w") as handle:
            handle.write(sysconfig.get_paths()["purelib"] + "\n")
    return str(folder / "bin")


@contextmanager
def worker_pool(tmp_path, python_bin: str, pythonpath: str | None):
    """Beam's worker pool (tests/worker_pool.py) on 127.0.0.1, its workers `python` from python_bin,
    run from tmp_path (not the repository); yields (address, log path); stopped by PID."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = python_bin + os.pathsep + env.get("PATH", "")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    log_path = tmp_path / "worker_pool.log"
    with open(log_path, "wb") as log:
        pool = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "worker_pool.py")], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=log)
    try:
        port = _read_port(pool, POOL_START_S)
        yield f"127.0.0.1:{port}", log_path
    finally:
        pool.send_signal(signal.SIGTERM)
        try:
            pool.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pool.kill()
            pool.wait(timeout=30)


def _read_port(pool: subprocess.Popen, limit_s: float) -> int:
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(pool.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=limit_s):
            raise AssertionError(f"the worker pool did not start within {limit_s} s")
    line = pool.stdout.readline().decode().strip()
    assert line.isdigit(), f"the worker pool did not start: {line!r} (exit {pool.poll()})"
    return int(line)


def test_an_external_worker_pool_gives_the_direct_runners_rows(posts, tiny_models_file, direct_rows, tmp_path):
    output = str(tmp_path / "out")
    with worker_pool(tmp_path, os.path.dirname(sys.executable), REPO) as (address, log):
        rows = label(posts, tiny_models_file, output, [*PORTABLE, "--environment_type", "EXTERNAL",
                                                       "--environment_config", address])
        assert "Starting worker with command ['python'" in log.read_text()  # the pool's process ran the job
    assert_same_rows(direct_rows, rows)
    assert_committed_alone(output)


def label_in_a_launcher(posts: str, models_file: str, output: str, beam_args: list[str]) -> tuple[int, list[str]]:
    """The command line in its own process (as an operator runs it): exit status and stderr lines."""
    env = {**os.environ, "PYTHONPATH": REPO}
    done = subprocess.run([sys.executable, "-m", "pipelines.label_corpus", "--input", posts, "--output", output,
                           "--models", models_file, "--only", "sentiment", "--device", "cpu", *beam_args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=FAILED_RUN_LIMIT_S)
    return done.returncode, [line for line in done.stderr.splitlines() if line.strip()]


def assert_one_line_and_nothing_committed(lines: list[str], output: str, says: str) -> None:
    ours = [line for line in lines if not line[:8].replace(":", "").isdigit()]  # the timestamped lines are the launch's
    assert len(ours) == 1, lines
    assert ours[0].startswith("label_corpus: ") and says in ours[0], ours[0]
    assert "--setup_file ./setup.py" in ours[0] and "deploy/Dockerfile" in ours[0]
    assert "nothing of this run was committed" in ours[0]
    assert not os.path.exists(output) or os.listdir(output) == [], os.listdir(output)


def test_a_pool_whose_python_lacks_beam_and_the_project_ends_the_job_at_the_deadline(posts, tiny_models_file, tmp_path):
    """Its worker dies at start (only the pool's log says so) and the job would wait for ever."""
    output = str(tmp_path / "out")
    with worker_pool(tmp_path, bare_python(tmp_path / "bare", with_beam=False), None) as (address, log):
        started = time.monotonic()
        code, lines = label_in_a_launcher(posts, tiny_models_file, output, [
            *PORTABLE, "--environment_type", "EXTERNAL", "--environment_config", address, "--worker-start-timeout", "5"])
        took = time.monotonic() - started
        assert "No module named 'apache_beam'" in log.read_text()  # the failure the launcher cannot see
    assert code == 2, lines
    assert_one_line_and_nothing_committed(lines, output, "no worker of the job started within 5 s")
    assert took < FAILED_RUN_LIMIT_S


def test_a_pool_whose_python_lacks_the_project_names_the_missing_module(posts, tiny_models_file, tmp_path):
    output = str(tmp_path / "out")
    with worker_pool(tmp_path, bare_python(tmp_path / "no_project", with_beam=True), None) as (address, _log):
        code, lines = label_in_a_launcher(posts, tiny_models_file, output, [
            *PORTABLE, "--environment_type", "EXTERNAL", "--environment_config", address])
    assert code == 2, lines
    assert_one_line_and_nothing_committed(lines, output, "a worker of the job cannot import")
