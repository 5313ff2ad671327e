"""The partition commit and a whole run on each object store, against local disk (issue 27).

    python -m benchmarks.object_stores [--n 2000] [--shards 1,8,32] [--corpus PATH]

Stores: local disk, gs:// on fake-gcs-server and s3:// on moto's S3 server, both started on
127.0.0.1 by tests/store_servers.py (emulators: what they measure is Beam's and our requests'
count and shape, not a cloud's latency). Two tables:

- commit: the wall time of partition.commit replacing a committed partition of N shards (3 rows
  each, one dead-letter file) with another of N shards, for each N of --shards;
- whole run: label_corpus on the first --n posts of the shared corpus (generated ones without
  it), the four tiny checkpoints (models/tiny_checkpoints.py, on local disk for every store),
  input and output on the store; after an untimed warm-up run, local disk runs first and last,
  and each store's time is given against the mean of those two.

The commit table's last row is s3:// with Beam's own client wrapper (a boto3 client per call),
the baseline for transforms/stores.py's shared client.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks.throughput import DEFAULT_CORPUS, load_posts, quiet_offline_transformers

STORES = ("local", "gs", "s3")
PER_CALL = "s3, a boto3 client per call (Beam's own)"


def stage(directory: str, run_id: str, shards: int) -> tuple[str, dict]:
    """A finished run's staging directory on any store: shards of 3 rows and one dead letter."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    from transforms import partition

    staging = partition.staging_dir(directory, run_id)
    if "://" not in staging:
        os.makedirs(os.path.join(staging, partition.ERRORS_DIR), exist_ok=True)
    for shard in range(shards):
        buffer = io.BytesIO()
        pq.write_table(pa.table({"id": [f"{run_id}-{shard}-{i}" for i in range(3)]}), buffer)
        name = f"labels-{shard:05d}-of-{shards:05d}{partition.STAGED_SHARD_SUFFIX}"
        with FileSystems.create(partition.join(staging, name)) as handle:
            handle.write(buffer.getvalue())
    letter = json.dumps({"source": "in.jsonl", "position": 0, "reason": "invalid JSON: x", "raw": run_id}) + "\n"
    with FileSystems.create(partition.join(staging, partition.ERRORS_DIR, "errors-00000-of-00001.jsonl")) as handle:
        handle.write(letter.encode())
    found = partition.count_outputs(staging, staged=True)
    return staging, {"run_id": run_id, "records_read": 3 * shards + 1, **found}


@contextlib.contextmanager
def beams_client_per_call():
    """Beam's own S3 client wrapper, which builds a boto3 client per call (what
    transforms/stores.py replaces), for the baseline row; small objects stay one PUT."""
    from apache_beam.io.aws.clients.s3 import boto3_client

    shared = boto3_client.Client
    boto3_client.Client = shared.__mro__[1]
    try:
        yield
    finally:
        boto3_client.Client = shared


def commit_seconds(root: str, shards: int) -> float:
    """Seconds to commit a partition of `shards` shards over a committed one of as many."""
    from transforms import partition

    directory = partition.join(root, f"commit-{shards}")
    staging, manifest = stage(directory, "20261121T010000-old", shards)
    partition.commit(staging, directory, manifest)
    staging, manifest = stage(directory, "20261121T020000-new", shards)
    started = time.perf_counter()
    partition.commit(staging, directory, manifest, base_run="20261121T010000-old")
    return time.perf_counter() - started


def run_seconds(input_glob: str, output: str, models_file: str) -> float:
    from pipelines.label_corpus import config_from_argv
    from pipelines.labeling import label
    from transforms import partition

    started = time.perf_counter()
    label(config_from_argv(["--input", input_glob, "--output", output, "--models", models_file, "--device", "cpu"]))
    wall = time.perf_counter() - started
    manifest = partition.read_manifest(output)
    assert manifest is not None and manifest["rows_written"] > 0, f"{output}: no complete partition"
    return wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--shards", default="1,8,32")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    args = parser.parse_args(argv)
    shard_counts = [int(part) for part in args.shards.split(",")]
    quiet_offline_transformers()

    from apache_beam.io.filesystems import FileSystems

    from models.tiny_checkpoints import build_all
    from pipelines import console
    from tests import store_servers
    from transforms import stores

    console.setup(verbose=False)
    work = Path(tempfile.mkdtemp(prefix="object_stores_bench_"))
    posts, described = load_posts(args.corpus, args.n)
    data = "".join(json.dumps(post, ensure_ascii=False) + "\n" for post in posts).encode("utf-8")
    build_all(work / "checkpoints")
    models_file = str(work / "checkpoints" / "models.json")
    print(f"posts: {described}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")

    with store_servers.moto_server() as s3_env, store_servers.fake_gcs_server(str(work)) as gs_env:
        os.environ.update({**s3_env, **gs_env})
        stores.configure()
        roots = {"local": str(work / "local")}
        for scheme, env in (("gs", gs_env), ("s3", s3_env)):
            store_servers.make_bucket(scheme, "bench", env)
            roots[scheme] = f"{scheme}://bench"

        commits = {(store, n): commit_seconds(roots[store], n) for store in STORES for n in shard_counts}
        with beams_client_per_call():
            store_servers.make_bucket("s3", "bench-per-call", s3_env)
            for n in shard_counts:
                commits[PER_CALL, n] = commit_seconds("s3://bench-per-call", n)
        print("\ncommit of a partition over a committed one (seconds)")
        print("| store | " + " | ".join(f"{n} shard{'s' * (n > 1)}" for n in shard_counts) + " |")
        print("|---|" + "---:|" * len(shard_counts))
        for store in (*STORES, PER_CALL):
            print(f"| {store} | " + " | ".join(f"{commits[store, n]:.2f}" for n in shard_counts) + " |")

        inputs = {}
        for store in STORES:
            path = f"{roots[store]}/posts/posts.jsonl"
            if store == "local":
                os.makedirs(os.path.dirname(path), exist_ok=True)
            with FileSystems.create(path) as handle:
                handle.write(data)
            inputs[store] = path
        run_seconds(inputs["local"], f"{roots['local']}/labels-warm-up", models_file)  # first-run costs, not timed
        order = ["local", "gs", "s3", "local"]
        runs = {}
        for i, store in enumerate(order):
            runs.setdefault(store, []).append(run_seconds(inputs[store], f"{roots[store]}/labels-{i}", models_file))
        local = sum(runs["local"]) / len(runs["local"])
        print(f"\nwhole run: {args.n} posts, four tiny classifiers, input and output on the store")
        print("| store | wall s | against local disk |")
        print("|---|---:|---:|")
        for store in STORES:
            wall = sum(runs[store]) / len(runs[store])
            detail = " (mean of the first and last run: " + ", ".join(f"{w:.1f}" for w in runs[store]) + ")" \
                if len(runs[store]) > 1 else ""
            print(f"| {store}{detail} | {wall:.1f} | {wall / local:.2f}x |")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
