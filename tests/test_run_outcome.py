"""Nothing looks like success when it is not: empty or unusable input and runs where most records
were dead-lettered end with a message naming the reason and the fix and a non-zero exit, after the
partition is written and accounted; --models problems are one line."""
from __future__ import annotations

import json

import pytest

from pipelines import label_corpus
from transforms import partition
from transforms.outcome import run_problem


def test_run_problem_thresholds():
    assert run_problem(0, 0, {}) .startswith("the input holds no records")
    assert run_problem(0, 0, {}, allow_empty=True) is None
    assert run_problem(10, 5, {"invalid JSON": 5}) is None  # exactly the share allowed
    message = run_problem(10, 4, {"invalid JSON": 4, "no 'body' field": 2})
    assert "6 of 10 records read (60%)" in message and "'invalid JSON' (4)" in message
    assert "JSON Lines" in message
    message = run_problem(3, 0, {"no 'text' field": 3})
    assert message.startswith("no record could be used") and "--text-field" in message
    assert run_problem(10, 1, {"x": 9}, max_dead_share=1) is None
    assert "broke off" in run_problem(0, 0, {}, [{"source": "a.jsonl.gz", "reason": "file unreadable"}])


def _main(tmp_path, tiny_checkpoints, name, content, *extra):
    (tmp_path / name).write_bytes(content)
    out = tmp_path / "out"
    code = label_corpus.main(["--input", str(tmp_path / name), "--output", str(out), "--only", "sentiment",
                              "--model", f"sentiment={tiny_checkpoints['sentiment']}", *extra])
    return code, out


def test_an_empty_input_exits_3_with_a_message_unless_allowed(tmp_path, tiny_checkpoints, capsys):
    code, out = _main(tmp_path, tiny_checkpoints, "empty.jsonl", b"")
    assert code == 3 and "the input holds no records" in capsys.readouterr().err
    manifest = json.loads((out / partition.MANIFEST).read_text())
    assert manifest["records_read"] == 0 and manifest["problem"]
    assert not (out / partition.SUCCESS).exists()  # a reader or sensor waiting for it takes nothing
    code, out = _main(tmp_path, tiny_checkpoints, "empty.jsonl", b"", "--allow-empty")
    assert code == 0 and json.loads((out / partition.MANIFEST).read_text())["problem"] is None
    assert (out / partition.SUCCESS).exists()


def test_a_csv_without_the_text_column_names_the_flag_to_fix(tmp_path, tiny_checkpoints, capsys):
    code, out = _main(tmp_path, tiny_checkpoints, "posts.csv", b"id,body\n1,hello\n2,world\n")
    err = capsys.readouterr().err
    assert code == 3 and "all 2 records read were dead-lettered" in err and "--text-field" in err
    assert json.loads((out / partition.MANIFEST).read_text())["dead_lettered"] == 2  # still accounted
    assert not (out / partition.SUCCESS).exists()
    assert len(list((out / partition.ERRORS_DIR).glob("*.jsonl"))) == 1  # readable: the dead letters are there


def test_a_suspect_run_is_readable_without_success_and_the_limits_still_decide(tmp_path, tiny_checkpoints, capsys):
    import pyarrow.dataset as ds

    content = b'{"id": "1", "text": "fine"}\n{"id": "2"}\n{"id": "3"}\n'  # 2 of 3 without text
    code, out = _main(tmp_path, tiny_checkpoints, "posts.jsonl", content, "--no-wait")
    assert code == 3 and "2 of 3 records read (67%)" in capsys.readouterr().err  # --no-wait: same on the DirectRunner
    manifest = json.loads((out / partition.MANIFEST).read_text())
    assert manifest["problem"] and not (out / partition.SUCCESS).exists()
    assert ds.dataset(str(out), format="parquet").to_table().column("id").to_pylist() == ["1"]
    assert partition.read_manifest(str(out)) is None  # not complete ...
    assert partition.read_manifest(str(out), suspect=True)["run_id"] == manifest["run_id"]  # ... but committed
    code, out = _main(tmp_path, tiny_checkpoints, "posts.jsonl", content, "--max-dead-letter-share", "0.7")
    assert code == 0 and (out / partition.SUCCESS).exists()
    assert json.loads((out / partition.MANIFEST).read_text())["problem"] is None


def test_a_flagged_partition_is_not_skipped_by_skip_if_done(tmp_path, tiny_checkpoints):
    code, _ = _main(tmp_path, tiny_checkpoints, "posts.csv", b"id,body\n1,hello\n")
    assert code == 3
    code, out = _main(tmp_path, tiny_checkpoints, "posts.csv", b"id,body\n1,hello\n", "--skip-if-done",
                      "--text-field", "body")
    assert code == 0 and json.loads((out / partition.MANIFEST).read_text())["rows_written"] == 1
    assert (out / partition.SUCCESS).exists()
    assert [p.read_text() for p in (out / partition.ERRORS_DIR).glob("*")] == [""]  # the flagged run's are gone


@pytest.mark.parametrize("content", [None, b"{not json", b'["a list"]', b'{"sentiment": 3}', b"\xff\xfe"])
def test_models_file_problems_are_one_line(tmp_path, content, capsys):
    path = tmp_path / "models.json"
    if content is not None:
        path.write_bytes(content)
    code = label_corpus.main(["--input", str(tmp_path / "x.jsonl"), "--output", str(tmp_path / "o"),
                              "--models", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("label_corpus: --models") and len(err.splitlines()) == 1, err
