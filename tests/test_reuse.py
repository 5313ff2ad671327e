"""--skip-if-done does only the work that is not done (issue 19): the plan (pure), the carry of one
text's committed columns (pure), and sequences of runs on one partition (checkpoints retrained,
classifiers added and dropped, input files added, changed and removed, a run killed at every
step of its commit), each compared with a fresh full run of the same command."""
from __future__ import annotations

import glob
import json
import os
import shutil
from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from pipelines.label_corpus import run
from pipelines.labeling import SKIPPED
from tests.test_commit import LATER, NOW, FaultyStorage, Killed
from tests.test_pipeline import read_dead_letters
from transforms import partition, reuse

IDENTITY = {"sentiment": reuse.classifier_identity("sha256:s0", "en"),
            "emotion": reuse.classifier_identity("sha256:e0", "en")}
ROW_OPTIONS = {"cleaning": {"url_token": None}, "clean_text_max_tokens": 512}
INPUTS = {"files": [{"path": "/in/a.jsonl", "size": 10, "version": "1"}], "not_read": []}


def committed(identities=IDENTITY, inputs=INPUTS, **extra):
    return {"run_id": "r1", "checkpoints": {n: {"checkpoint": "x", "revision": i["revision"]} for n, i in identities.items()},
            "routing": {n: i["routing"] for n, i in identities.items()}, "row_options": ROW_OPTIONS,
            "inputs": inputs, **extra}


def test_plan_does_nothing_when_nothing_changed_and_only_what_changed_otherwise():
    assert reuse.plan(committed(), IDENTITY, ROW_OPTIONS, INPUTS).nothing_to_do
    retrained = {**IDENTITY, "sentiment": reuse.classifier_identity("sha256:s1", "en")}
    work = reuse.plan(committed(), retrained, ROW_OPTIONS, INPUTS)
    assert (work.full, work.rerun, work.carried, work.dropped, work.inputs_changed) == (
        False, ("sentiment",), ("emotion",), (), False)
    rerouted = {**IDENTITY, "emotion": reuse.classifier_identity("sha256:e0", "en,ms")}
    assert reuse.plan(committed(), rerouted, ROW_OPTIONS, INPUTS).rerun == ("emotion",)
    added = {"politics": reuse.classifier_identity("sha256:p0", "en,ms"), **IDENTITY}
    assert reuse.plan(committed(), added, ROW_OPTIONS, INPUTS).rerun == ("politics",)
    work = reuse.plan(committed(), {"emotion": IDENTITY["emotion"]}, ROW_OPTIONS, INPUTS)
    assert (work.dropped, work.carried, work.nothing_to_do) == (("sentiment",), ("emotion",), False)
    late = {**INPUTS, "files": [*INPUTS["files"], {"path": "/in/b.jsonl", "size": 5, "version": "2"}]}
    work = reuse.plan(committed(), IDENTITY, ROW_OPTIONS, late)
    assert (work.rerun, work.carried, work.inputs_changed) == ((), ("sentiment", "emotion"), True)
    grown = {**INPUTS, "files": [{**INPUTS["files"][0], "size": 11}]}
    assert reuse.plan(committed(), IDENTITY, ROW_OPTIONS, grown).inputs_changed


def test_plan_relabels_everything_where_rows_would_differ_or_reuse_is_refused():
    for previous, options, why in [(None, ROW_OPTIONS, "no complete run"),
                                   (committed(problem="no records"), ROW_OPTIONS, "flagged"),
                                   (committed(), {**ROW_OPTIONS, "cleaning": {"url_token": "URL"}},
                                    "its rows were made differently (other cleaning): every row is made again"),
                                   (committed(), {**ROW_OPTIONS, "cleaning": {}, "lang_field": "lang"},
                                    "(other cleaning, lang_field)"),
                                   ({**committed(), "row_options": None}, ROW_OPTIONS, "made differently")]:
        work = reuse.plan(previous, IDENTITY, options, INPUTS)
        assert work.full and work.rerun == ("sentiment", "emotion") and not work.carried and why in work.reason
    retrained = {**IDENTITY, "sentiment": reuse.classifier_identity("sha256:s1", "en")}
    work = reuse.plan(committed(), retrained, ROW_OPTIONS, INPUTS, reuse=False)
    assert work.full and not work.carried and "--no-reuse" in work.reason
    assert reuse.plan(committed(), IDENTITY, ROW_OPTIONS, INPUTS, reuse=False).nothing_to_do


def test_carry_group_gives_each_row_the_columns_of_its_text_in_its_language():
    rows = [{"id": "1", "clean_text": "hi"}, {"id": "2", "clean_text": "hi"}]
    committed_rows = [("en", {"sentiment": "positive"}), ("en", {"sentiment": "negative"}), ("zh", {"sentiment": None})]
    out = reuse.carry_group(rows, committed_rows)
    assert [reuse.take_carried({**row, "lang": lang}) for row, lang in zip(out, ["en", "zh"])] == [
        {"sentiment": "positive"}, {"sentiment": None}]
    assert reuse.take_carried({**out[0], "lang": "ms"}) is None  # another language: not labeled before
    assert reuse.carry_group([{"id": "3", "clean_text": "new"}], []) == [{"id": "3", "clean_text": "new"}]


def test_provenance_names_the_runs_behind_each_classifiers_columns():
    previous = {"run_id": "r1", "provenance": {"emotion": {"runs": ["r0"]}}}
    counts = {"inferences_sentiment": 10, "carried_sentiment": 0, "inferences_emotion": 2, "carried_emotion": 8}
    assert reuse.provenance(previous, counts, "r2", ["sentiment", "emotion"]) == {
        "sentiment": {"runs": ["r2"], "inferences": 10, "carried": 0},
        "emotion": {"runs": ["r0", "r2"], "inferences": 2, "carried": 8}}


def test_the_summary_says_what_was_reused_and_what_ran():
    from pipelines.console import reuse_lines

    manifest = {"run_id": "r2", "reuse": {"full": False, "reason": "runs sentiment (another checkpoint); carries emotion",
                                          "dropped": ["politics"]},
                "provenance": {"sentiment": {"runs": ["r2"], "inferences": 40, "carried": 0},
                               "emotion": {"runs": ["r1"], "inferences": 0, "carried": 40},
                               "stars": {"runs": ["r0", "r1", "r2"], "inferences": 3, "carried": 37}}}
    assert reuse_lines(manifest) == [
        "reuse: runs sentiment (another checkpoint); carries emotion",
        "  sentiment: model ran on 40 posts, none carried",
        "  emotion: model ran on 0 posts, 40 carried from run r1",
        "  stars: model ran on 3 posts, 37 carried from runs r0, r1",
        "  politics: dropped (not named in this run)"]
    assert reuse_lines({"reuse": {"full": True, "reason": "--no-reuse"}}) == ["reuse: none (--no-reuse)"]


# ------------------------------------------------------------------------------- whole runs

FILES = {  # name -> content versions; v1 keeps some lines of v0 and changes others
    "f0": {0: ["the vote is today", "i love this", "", "taxes again"]},
    "f1": {0: ["rain all day", "what a game", "i love this"], 1: ["rain all day", "what a match", "so tired"]},
    "f2": {0: ["late post one", "late post two", "{broken"]},
}


@pytest.fixture(scope="module")
def versions(tiny_checkpoints, tmp_path_factory):
    """(classifier, version) -> checkpoint: version 0 the shared tiny ones, 1 "retrained": the same
    files with every weight moved (other scores, another revision)."""
    from safetensors.numpy import load_file, save_file

    root = tmp_path_factory.mktemp("retrained")
    paths = {(name, 0): tiny_checkpoints[name] for name in ("sentiment", "emotion")}
    for name in ("sentiment", "emotion"):
        target = root / name
        shutil.copytree(tiny_checkpoints[name], target)
        weights = load_file(target / "model.safetensors")
        save_file({key: value * 1.5 + 0.01 for key, value in weights.items()}, target / "model.safetensors",
                  metadata={"format": "pt"})
        paths[(name, 1)] = str(target)
    return paths


def write_inputs(folder, files):
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for name, version in files.items():
        with open(os.path.join(folder, f"{name}.jsonl"), "w") as handle:
            for i, text in enumerate(FILES[name][version]):
                handle.write(text + "\n" if text.startswith("{") else
                             json.dumps({"id": f"{name}-{version}-{i}", "text": text}) + "\n")


def label(folder, out, classifiers, versions, *extra):
    argv = ["--input", os.path.join(folder, "*.jsonl"), "--output", out, "--device", "cpu",
            "--only", ",".join(classifiers), "--batch-size", "8", *extra]
    for name, version in classifiers.items():
        argv += ["--model", f"{name}={versions[(name, version)]}"]
    return run(argv)


def partition_rows(out) -> dict:
    tables = [pq.read_table(p) for p in sorted(glob.glob(os.path.join(out, "labels-*.parquet")))]
    table = pa.concat_tables(tables)
    return {"columns": table.schema.names, "rows": {row["id"]: row for row in table.to_pylist()}}


def letters(out) -> list:
    return sorted((l["source"], l["position"], l["reason"]) for l in read_dead_letters(out))


def assert_same_as_fresh(reused, fresh, before, carried_names):
    """reused equals fresh row for row, column for column (floats within 1e-6); carried classifiers'
    values on texts labeled before are the committed ones, bit for bit."""
    got, want = partition_rows(reused), partition_rows(fresh)
    assert got["columns"] == want["columns"] and set(got["rows"]) == set(want["rows"])
    earlier = {(row["clean_text"], row["lang"]): row for row in before["rows"].values()} if before else {}
    for row_id, row in got["rows"].items():
        for column, value in row.items():
            expected = want["rows"][row_id][column]
            if isinstance(value, float):
                assert value == pytest.approx(expected, abs=1e-6), (row_id, column)
            else:
                assert value == expected, (row_id, column)
            old = earlier.get((row["clean_text"], row["lang"]))
            if old is not None and any(column.startswith(name) for name in carried_names):
                assert value == old[column], (row_id, column)  # carried, bit for bit
    assert letters(reused) == letters(fresh)
    mine, theirs = partition.read_manifest(reused), partition.read_manifest(fresh)
    for key in ("records_read", "rows_written", "dead_lettered", "files_broken_off", "checkpoints", "routing"):
        assert mine[key] == theirs[key], key
    for name in theirs["inferences"]:  # each text is either run or carried, never both, never neither
        assert mine["inferences"][name] + mine["carried"][name] == theirs["inferences"][name], name
        assert mine["provenance"][name]["inferences"] == mine["inferences"][name]


CLASSIFIER_STATES = st.dictionaries(st.sampled_from(["sentiment", "emotion"]), st.integers(0, 1), min_size=1)
FILE_STATES = st.dictionaries(st.sampled_from(["f0", "f1", "f2"]), st.just(0), min_size=1).flatmap(
    lambda files: st.fixed_dictionaries({name: st.sampled_from(sorted(FILES[name])) for name in files}))


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(st.tuples(CLASSIFIER_STATES, FILE_STATES), min_size=2, max_size=2))
@example(steps=[
    ({"sentiment": 0}, {"f0": 0, "f1": 0}),
    ({"sentiment": 0, "emotion": 0}, {"f0": 0, "f1": 1, "f2": 0}),  # a classifier added, a file changed and added
    ({"sentiment": 1, "emotion": 0}, {"f1": 1, "f2": 0}),  # sentiment retrained, a file removed
])
def test_each_run_of_a_sequence_equals_a_fresh_full_run(steps, versions, tmp_path_factory):
    root = tmp_path_factory.mktemp("sequence")
    folder, out, fresh = str(root / "in"), str(root / "out"), str(root / "fresh")
    before, previous = None, None
    for classifiers, files in steps:
        write_inputs(folder, files)
        label(folder, out, classifiers, versions, "--skip-if-done")
        if previous is not None:  # the first run of a partition is a fresh full run itself
            shutil.rmtree(fresh, ignore_errors=True)
            label(folder, fresh, classifiers, versions)
            carried = [name for name, version in classifiers.items() if previous.get(name) == version]
            assert_same_as_fresh(out, fresh, before, carried)
        before, previous = partition_rows(out), classifiers


def test_nothing_to_do_loads_no_weights_and_a_killed_reuse_commit_leaves_old_or_new(
        versions, tmp_path, monkeypatch):
    folder, out = str(tmp_path / "in"), str(tmp_path / "out")
    write_inputs(folder, {"f0": 0, "f1": 0})
    label(folder, out, {"sentiment": 0, "emotion": 0}, versions)
    old = partition_rows(out)

    import models.checkpoints

    def no_weights(*args, **kwargs):
        raise AssertionError("weights loaded to decide there is nothing to do")

    with monkeypatch.context() as patch:
        patch.setattr(models.checkpoints, "load_weights", no_weights)
        assert label(folder, out, {"sentiment": 0, "emotion": 0}, versions, "--skip-if-done").status == SKIPPED

    # The next run (sentiment retrained, a late file) dies in its commit: replay that commit with
    # the process killed before each of its file operations, then let a later run recover it.
    write_inputs(folder, {"f0": 0, "f1": 0, "f2": 0})
    staged = {}
    real_commit = partition.commit

    def keep_staged(staging, directory, manifest, *, base_run=None, storage=None, now=None):
        staged.update(staging=staging, manifest=manifest, base_run=base_run)

    with monkeypatch.context() as patch:  # a process that dies in its commit cleans nothing up after it
        patch.setattr(partition, "commit", keep_staged)
        patch.setattr(partition, "discard_staging", lambda *args, **kwargs: None)
        label(folder, out, {"sentiment": 1, "emotion": 0}, versions, "--skip-if-done")
    pristine = str(tmp_path / "pristine")
    shutil.copytree(out, pristine)
    real_commit(staged["staging"], out, staged["manifest"], base_run=staged["base_run"], now=NOW)
    new = partition_rows(out)
    assert set(new["rows"]) > set(old["rows"]) and new["rows"] != old["rows"]

    probe = FaultyStorage()
    shutil.rmtree(out)
    shutil.copytree(pristine, out)
    real_commit(staged["staging"], out, staged["manifest"], base_run=staged["base_run"], storage=probe, now=NOW)
    outcomes = set()
    for step in range(1, probe.steps + 1):
        shutil.rmtree(out)
        shutil.copytree(pristine, out)

        def kill(current, op, args, step=step):
            if current == step:
                raise Killed()

        with pytest.raises(Killed):
            real_commit(staged["staging"], out, staged["manifest"], base_run=staged["base_run"],
                        storage=FaultyStorage(kill), now=NOW)
        partition.recover(out, now=LATER)
        seen = partition_rows(out) if partition.read_manifest(out) else None
        assert seen in (old, new), f"killed before step {step}: a mix"
        outcomes.add("new" if seen == new else "old")
    assert outcomes == {"old", "new"}

    # A classifier no longer named is dropped, the other's columns carried bit for bit: no model runs.
    label(folder, out, {"emotion": 0}, versions, "--skip-if-done")
    dropped = partition_rows(out)
    assert not any(column.startswith("sentiment") for column in dropped["columns"])
    assert all(row[column] == new["rows"][row_id][column] for row_id, row in dropped["rows"].items() for column in row)
    manifest = partition.read_manifest(out)
    assert manifest["inferences"] == {"emotion": 0} and manifest["carried"]["emotion"] > 0
    assert manifest["reuse"]["dropped"] == ["sentiment"] and manifest["rows_written"] == len(new["rows"])
