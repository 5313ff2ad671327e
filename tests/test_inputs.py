"""Input files that change or are not what they seem (issue 18, item 3): the set of files and
their sizes are fixed at launch, and every file that cannot be read as listed (gone, shrunk before
or while it is read, a directory named like an input as Spark writes, a dangling symlink, a FIFO,
unreadable, a .gz that is not gzip) becomes a dead letter naming it and what happened; a run
where nothing can be read fails with exit 2 and one line; the launcher's pre-reads never fail it."""
from __future__ import annotations

import gzip
import json
import os

import pytest

from pipelines.label_corpus import main
from tests.test_pipeline import read_dead_letters, read_labels
from transforms import partition
from pipelines.beam_steps import ReadRecordsFn
from transforms.inputs import InputFile, list_inputs
from transforms.records import FieldMap, decode_dead_letter


def write_posts(path, ids, compress=False):
    lines = "".join(json.dumps({"id": i, "text": f"post {i} about the vote"}) + "\n" for i in ids)
    with (gzip.open(path, "wt") if compress else open(path, "w")) as handle:
        handle.write(lines)


def read(listed: InputFile):
    """What the pipeline's reader makes of one listed file: (record ids, dead letters)."""
    records, letters = [], []
    for item in ReadRecordsFn(FieldMap(), {}).process(listed):
        if isinstance(item, dict):
            records.append(item["id"])
        else:
            letters.append(decode_dead_letter(item.value))
    return records, letters


@pytest.fixture()
def odd_inputs(tmp_path):
    """A folder of inputs where only a.jsonl and b.jsonl.gz are what their names say."""
    folder = tmp_path / "in"
    folder.mkdir()
    write_posts(folder / "a.jsonl", ["a1", "a2", "a3"])
    write_posts(folder / "b.jsonl.gz", ["b1", "b2"], compress=True)
    (folder / "c.jsonl").mkdir()  # Spark's output: a directory of part files
    write_posts(folder / "c.jsonl" / "part-00000.jsonl", ["c1"])
    os.symlink(folder / "nowhere.jsonl", folder / "d.jsonl")
    os.mkfifo(folder / "f.jsonl")
    with open(folder / "0g.jsonl.gz", "w") as handle:  # named gzip, written as plain text; listed first
        handle.write(json.dumps({"id": "g1", "text": "plain"}) + "\n")
    return folder


def test_listing_names_each_match_that_cannot_be_read(odd_inputs):
    listed, not_read = list_inputs(str(odd_inputs / "*"))
    assert [os.path.basename(f.path) for f in listed] == ["0g.jsonl.gz", "a.jsonl", "b.jsonl.gz"]
    assert all(f.size == os.path.getsize(f.path) and f.version == str(os.stat(f.path).st_mtime_ns) for f in listed)
    reasons = {os.path.basename(letter.source): letter.reason for letter in not_read}
    assert set(reasons) == {"c.jsonl", "d.jsonl", "f.jsonl"} and all(l.position is None for l in not_read)
    assert "a directory" in reasons["c.jsonl"] and "part-*" in reasons["c.jsonl"]
    assert "symlink" in reasons["d.jsonl"] and "does not exist" in reasons["d.jsonl"]
    assert "FIFO" in reasons["f.jsonl"]


def test_files_changed_between_listing_and_read_become_dead_letters(odd_inputs):
    listed = {os.path.basename(f.path): f for f in list_inputs(str(odd_inputs / "*"))[0]}
    assert read(listed["a.jsonl"]) == (["a1", "a2", "a3"], [])

    write_posts(odd_inputs / "a.jsonl", ["a1", "a2", "a3", "late1", "late2"])  # grew: launch bytes only
    assert read(listed["a.jsonl"]) == (["a1", "a2", "a3"], [])

    write_posts(odd_inputs / "a.jsonl", ["a1"])  # shrank before it was read
    records, letters = read(listed["a.jsonl"])
    assert records == [] and len(letters) == 1 and letters[0]["source"] == listed["a.jsonl"].path
    assert "shrunk since launch" in letters[0]["reason"] and letters[0]["position"] is None

    os.remove(odd_inputs / "b.jsonl.gz")
    records, letters = read(listed["b.jsonl.gz"])
    assert records == [] and "gone since launch" in letters[0]["reason"]

    os.remove(odd_inputs / "a.jsonl")
    os.mkfifo(odd_inputs / "a.jsonl")  # replaced by a FIFO: refused at once, no hang
    records, letters = read(listed["a.jsonl"])
    assert records == [] and "no longer a regular file" in letters[0]["reason"]


def test_a_file_truncated_while_read_is_named_with_how_far_it_was_read(tmp_path):
    path = tmp_path / "big.jsonl"
    write_posts(path, [f"p{i}" for i in range(20000)])
    listed = list_inputs(str(path))[0][0]
    reader = ReadRecordsFn(FieldMap(), {}).process(listed)
    first = next(reader)  # the file is open and partly read
    os.truncate(path, 1000)
    rest = list(reader)
    records = [first] + [item for item in rest if isinstance(item, dict)]
    letters = [decode_dead_letter(item.value) for item in rest if not isinstance(item, dict)]
    assert len(letters) == 1 and letters[0]["source"] == str(path)
    assert f"after record {len(records)}" in letters[0]["reason"] and "shrank while being read" in letters[0]["reason"]
    assert 0 < len(records) < 20000


def test_a_gz_that_is_not_gzip_and_an_unreadable_file_are_dead_letters(odd_inputs, monkeypatch):
    listed = {os.path.basename(f.path): f for f in list_inputs(str(odd_inputs / "*"))[0]}
    records, letters = read(listed["0g.jsonl.gz"])
    assert records == [] and "named .gz but not gzip" in letters[0]["reason"]
    # Permission bits do not stop root (the test may run as root): the open fails as it would.
    real_open = os.open

    def refuse(path, *args, **kwargs):
        if str(path).endswith("a.jsonl"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    records, letters = read(listed["a.jsonl"])
    assert records == [] and "cannot be opened" in letters[0]["reason"] and "Permission denied" in letters[0]["reason"]
    assert read(listed["b.jsonl.gz"])[0] == ["b1", "b2"]  # the others still open


def test_a_run_over_odd_files_labels_the_good_ones_and_names_every_bad_one(odd_inputs, tmp_path, tiny_checkpoints):
    out = tmp_path / "out"
    argv = ["--input", str(odd_inputs / "*"), "--output", str(out), "--only", "sentiment",
            "--model", f"sentiment={tiny_checkpoints['sentiment']}", "--device", "cpu", "--keep-fields", "id2"]
    # The .gz that is not gzip, listed first, no longer stops the pre-reads (progress, kept-field types).
    assert main(argv) == 0
    assert sorted(read_labels(out).column("id").to_pylist()) == ["a1", "a2", "a3", "b1", "b2"]
    letters = {os.path.basename(letter["source"]): letter["reason"] for letter in read_dead_letters(out)}
    assert set(letters) == {"c.jsonl", "d.jsonl", "f.jsonl", "0g.jsonl.gz"}
    manifest = partition.read_manifest(str(out))
    assert {os.path.basename(b["source"]) for b in manifest["files_broken_off"]} == set(letters)
    assert manifest["records_read"] == manifest["rows_written"] + manifest["dead_lettered"] == 5
    assert [os.path.basename(f["path"]) for f in manifest["inputs"]["files"]] == ["0g.jsonl.gz", "a.jsonl", "b.jsonl.gz"]
    assert {os.path.basename(f["path"]) for f in manifest["inputs"]["not_read"]} == {"c.jsonl", "d.jsonl", "f.jsonl"}


def test_a_run_where_nothing_can_be_read_fails_with_one_line_and_writes_nothing(tmp_path, tiny_checkpoints, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    os.mkfifo(folder / "only.jsonl")
    code = main(["--input", str(folder / "*.jsonl"), "--output", str(tmp_path / "out"), "--only", "sentiment",
                 "--model", f"sentiment={tiny_checkpoints['sentiment']}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "only.jsonl" in err[0] and "FIFO" in err[0]
    assert not (tmp_path / "out").exists()
