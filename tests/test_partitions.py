"""Scheduled partitions: --date, reruns that replace the partition, _SUCCESS and the manifest last,
--skip-if-done, and a loud failure when the counts do not reconcile."""
from __future__ import annotations

import glob
import json
import os

import pytest

from pipelines.label_corpus import main, run
from pipelines.labeling import DONE, SKIPPED, counter_values
from tests.test_pipeline import read_labels
from transforms import partition

DATE = "2026-11-21"


@pytest.fixture()
def dated_input(tmp_path):
    folder = tmp_path / "posts" / f"dt={DATE}"
    folder.mkdir(parents=True)
    with open(folder / "part-0.jsonl", "w") as handle:
        for i in range(40):
            handle.write(json.dumps({"id": f"p{i}", "text": f"post {i} about the economy"}) + "\n")
        handle.write("{broken\n")
    return str(tmp_path / "posts" / "dt={date}" / "*.jsonl"), str(tmp_path / "labels" / "dt={date}")


def argv(dated_input, checkpoint, *extra):
    source, target = dated_input
    return ["--date", DATE, "--input", source, "--output", target, "--only", "sentiment",
            "--model", f"sentiment={checkpoint}", *extra]


def test_date_fills_paths_and_a_rerun_with_fewer_shards_leaves_nothing_stale(dated_input, tiny_checkpoints):
    out = dated_input[1].replace("{date}", DATE)
    run(argv(dated_input, tiny_checkpoints["sentiment"], "--num-shards", "3"))
    assert len(glob.glob(os.path.join(out, "labels-*-of-00003.parquet"))) == 3
    first = json.load(open(os.path.join(out, partition.MANIFEST)))
    assert first["date"] == DATE and first["input_paths"][0].endswith(f"dt={DATE}/part-0.jsonl")

    run(argv(dated_input, tiny_checkpoints["sentiment"], "--num-shards", "1"))
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "labels-*"))) == [
        "labels-00000-of-00001.parquet"]
    assert len(read_labels(out)) == 40
    assert len(glob.glob(os.path.join(out, "_errors", "*.jsonl"))) == 1
    assert not glob.glob(os.path.join(out, "_staging-*"))
    assert os.path.exists(os.path.join(out, partition.SUCCESS))
    manifest = json.load(open(os.path.join(out, partition.MANIFEST)))
    assert (manifest["records_read"], manifest["rows_written"], manifest["dead_lettered"]) == (41, 40, 1)
    assert manifest["dead_lettered_by_reason"] == {"invalid JSON": 1}
    assert manifest["checkpoints"]["sentiment"]["revision"].startswith("sha256:")


def test_success_and_manifest_are_written_after_every_shard(dated_input, tiny_checkpoints, monkeypatch):
    out = dated_input[1].replace("{date}", DATE)
    run(argv(dated_input, tiny_checkpoints["sentiment"]))  # a previous, complete partition
    events = []
    real_rename, real_write = partition.FileSystems.rename, partition._write_text

    def rename(sources, targets):
        events.append(("rename", os.path.exists(os.path.join(out, partition.SUCCESS)),
                       os.path.exists(os.path.join(out, partition.MANIFEST))))
        return real_rename(sources, targets)

    def write_text(path, text):
        events.append(("write", os.path.basename(path), len(glob.glob(os.path.join(out, "labels-*.parquet")))))
        return real_write(path, text)

    monkeypatch.setattr(partition.FileSystems, "rename", staticmethod(rename))
    monkeypatch.setattr(partition, "_write_text", write_text)
    run(argv(dated_input, tiny_checkpoints["sentiment"]))
    commit_events = [e for e in events if e[0] == "write" or e[1:] == (False, False)]
    assert commit_events[-3][0] == "rename"  # the shards move in while neither marker exists
    assert commit_events[-2][:2] == ("write", partition.MANIFEST) and commit_events[-2][2] >= 1
    assert commit_events[-1][:2] == ("write", partition.SUCCESS)


def test_counts_that_do_not_reconcile_fail_loudly_and_leave_no_success(dated_input, tiny_checkpoints, monkeypatch):
    out = dated_input[1].replace("{date}", DATE)
    real_count = partition.count_outputs

    def lose_a_row(directory, **kw):
        found = real_count(directory, **kw)
        return {**found, "rows_written": found["rows_written"] - 1}

    monkeypatch.setattr(partition, "count_outputs", lose_a_row)
    with pytest.raises(partition.ReconciliationError, match=r"records read \(41\) != rows written \(39\)"):
        run(argv(dated_input, tiny_checkpoints["sentiment"]))
    assert not os.path.exists(os.path.join(out, partition.SUCCESS))
    assert main(argv(dated_input, tiny_checkpoints["sentiment"])) == 2


def test_skip_if_done_needs_success_and_the_same_checkpoints(dated_input, tiny_checkpoints, tmp_path):
    assert run(argv(dated_input, tiny_checkpoints["sentiment"], "--skip-if-done")).status == DONE
    assert run(argv(dated_input, tiny_checkpoints["sentiment"], "--skip-if-done")).status == SKIPPED
    from models.tiny_checkpoints import build_tiny_checkpoint

    other = build_tiny_checkpoint("sentiment", tmp_path / "other", seed=99)
    assert run(argv(dated_input, other, "--skip-if-done")).status == DONE  # new checkpoint: label again


def test_date_placeholder_without_date_is_a_usage_error(dated_input, tiny_checkpoints, capsys):
    source, target = dated_input
    code = main(["--input", source, "--output", target, "--only", "sentiment",
                 "--model", f"sentiment={tiny_checkpoints['sentiment']}"])
    assert code == 2 and "pass --date YYYY-MM-DD" in capsys.readouterr().err


def test_the_job_commits_itself_with_counts_taken_in_the_pipeline(dated_input, tiny_checkpoints):
    out = dated_input[1].replace("{date}", DATE)
    result = run(argv(dated_input, tiny_checkpoints["sentiment"], "--no-wait", "--cost-per-hour", "3.6"))
    result.pipeline_result.wait_until_finish()
    manifest = partition.read_manifest(out)
    assert manifest is not None and manifest["run_id"].startswith(manifest["started"][:4])
    # The counts come from the pipeline itself; Beam's own RunInference counter agrees.
    inferences = [value for (_, name), value in counter_values(result).items() if name == "num_inferences"]
    assert manifest["inferences"] == {"sentiment": sum(inferences)} == {"sentiment": 40}
    real_tokens = sum(value for (_, name), value in counter_values(result).items()
                      if name == "real_tokens")  # the handler's own count
    assert manifest["tokens"] == {"sentiment": real_tokens} and real_tokens > 40
    assert (manifest["records_read"], manifest["rows_written"], manifest["dead_lettered"]) == (41, 40, 1)
    assert manifest["files"] == {os.path.relpath(p, out): n for p, n in
                                 [(p, len(read_labels_file(p))) for p in glob.glob(os.path.join(out, "labels-*"))]
                                 + [(p, 1) for p in glob.glob(os.path.join(out, "_errors", "*.jsonl"))]}
    wall = manifest["wall_seconds"]
    assert wall > 0 and manifest["posts_per_second"] == pytest.approx(41 / wall, rel=1e-2)
    assert manifest["cost_usd"] == pytest.approx(3.6 * wall / 3600, rel=1e-2)
    assert manifest["cost_per_million_posts_usd"] == pytest.approx(3.6 * wall / 3600 / 41 * 1e6, rel=1e-2)
    assert not glob.glob(os.path.join(out, "_staging-*")) and not os.path.exists(os.path.join(out, partition.LOCK))


def read_labels_file(path):
    import pyarrow.parquet as pq

    return pq.read_table(path)


def test_a_run_that_another_run_overtook_fails_loudly_and_keeps_the_others_partition(
        dated_input, tiny_checkpoints, monkeypatch, capsys):
    out = dated_input[1].replace("{date}", DATE)
    real_count = partition.count_outputs
    other = {}

    def another_run_commits_first(directory, **kw):
        if not other:  # while this job runs, a second job of the same partition commits
            import pyarrow as pa
            import pyarrow.parquet as pq

            staging = partition.staging_dir(out, "20261121T000000-other")
            os.makedirs(staging)
            pq.write_table(pa.table({"id": ["o1", "o2"]}),
                           os.path.join(staging, "labels-00000-of-00001" + partition.STAGED_SHARD_SUFFIX))
            found = real_count(staging, staged=True)
            partition.commit(staging, out, {"run_id": "20261121T000000-other", "records_read": 2, **found})
            other["ids"] = ["o1", "o2"]
        return real_count(directory, **kw)

    monkeypatch.setattr(partition, "count_outputs", another_run_commits_first)
    assert main(argv(dated_input, tiny_checkpoints["sentiment"])) == 2
    assert "another run (20261121T000000-other) committed" in capsys.readouterr().err
    assert sorted(read_labels(out).column("id").to_pylist()) == other["ids"]
    assert partition.read_manifest(out)["run_id"] == "20261121T000000-other"
    assert not glob.glob(os.path.join(out, "_staging-*"))


def test_skip_if_done_treats_a_corrupt_manifest_as_incomplete(dated_input, tiny_checkpoints, caplog):
    out = dated_input[1].replace("{date}", DATE)
    run(argv(dated_input, tiny_checkpoints["sentiment"]))
    with open(os.path.join(out, partition.MANIFEST), "w") as handle:
        handle.write('{"checkpoints": ')  # cut off mid-write
    assert run(argv(dated_input, tiny_checkpoints["sentiment"], "--skip-if-done")) is not None
    assert caplog.text.count("treating the partition as incomplete") == 1  # said once, not per look
    assert partition.read_manifest(out)["rows_written"] == 40


def test_two_jobs_of_one_partition_at_once_leave_one_complete_run(dated_input, tiny_checkpoints):
    """Two launcher processes of the same date started together (a scheduler firing twice)."""
    import subprocess
    import sys

    out = dated_input[1].replace("{date}", DATE)
    command = [sys.executable, "-m", "pipelines.label_corpus", *argv(dated_input, tiny_checkpoints["sentiment"])]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    jobs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outcomes = [(job.wait(timeout=300), job.stderr.read()) for job in jobs]
    codes = sorted(code for code, _ in outcomes)
    # Both succeed only when one started after the other had committed (it then replaced it).
    assert codes in ([0, 0], [0, 2]), outcomes
    if codes == [0, 2]:
        assert "another run" in next(err for code, err in outcomes if code == 2)
    manifest = partition.read_manifest(out)
    ids = read_labels(out).column("id").to_pylist()
    assert sorted(ids) == sorted(f"p{i}" for i in range(40)) and manifest["rows_written"] == 40
    assert set(manifest["files"]) == {os.path.relpath(p, out) for p in
                                      glob.glob(os.path.join(out, "labels-*")) + glob.glob(os.path.join(out, "_errors", "*"))}
    assert not glob.glob(os.path.join(out, "_staging-*")) and not glob.glob(os.path.join(out, "_previous-*"))
