"""Nothing looks like success when it is not: empty or unusable input and runs where most records
were dead-lettered end with a message naming the reason and the fix and a non-zero exit, after the
partition is written and accounted; inputs without the text field and --models problems are one
line at launch."""
from __future__ import annotations

import gzip
import json
import shutil

import pytest

from pipelines import label_corpus, labeling
from transforms import partition
from transforms.records import FieldMap
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


def _parquet_bytes(table) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _inputs_with_body() -> dict[str, bytes]:
    """The same two posts, their text in `body`, as each input format holds them."""
    import pyarrow as pa

    rows = [{"id": "1", "body": "the vote was a great day for the economy", "lang": "en"},
            {"id": "2", "body": "prices are bad and the roads are worse", "lang": "en"}]
    csv_text = "id,body,lang\n" + "".join(f"{r['id']},{r['body']},{r['lang']}\n" for r in rows)
    return {"posts.csv": csv_text.encode(), "posts.jsonl.gz": gzip.compress(
                "".join(json.dumps(r) + "\n" for r in rows).encode()),
            "posts.parquet": _parquet_bytes(pa.Table.from_pylist(rows))}


@pytest.mark.parametrize("name", ["posts.csv", "posts.jsonl.gz", "posts.parquet"])
def test_an_input_without_the_text_field_is_refused_at_launch_before_any_model_loads(tmp_path, tiny_checkpoints,
                                                                                     capsys, name):
    """One line, exit 2, the file's columns and the flag that fixes it, nothing written. The checkpoint's
    weights are garbage: a run that loaded a model (validation loads each one) would fail on them
    instead, as the control run with the right --text-field does."""
    checkpoint = tmp_path / "sentiment"
    shutil.copytree(tiny_checkpoints["sentiment"], checkpoint)
    (checkpoint / "model.safetensors").write_bytes(b"not weights")
    (tmp_path / name).write_bytes(_inputs_with_body()[name])
    argv = ["--input", str(tmp_path / name), "--output", str(tmp_path / "out"), "--only", "sentiment",
            "--model", f"sentiment={checkpoint}"]
    assert label_corpus.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"label_corpus: no 'text' field in the input: {tmp_path / name} has the columns id, body, lang; "
                   "name the column that holds the text with --text-field (e.g. --text-field body)"]
    assert not (tmp_path / "out").exists()
    assert label_corpus.main([*argv, "--text-field", "body"]) == 2  # the control: now the model is loaded
    assert "SafetensorError" in capsys.readouterr().err


def test_inputs_run_while_one_file_has_the_text_field(tmp_path):
    """One file without it (an export of another shape) does not stop the others: its records become
    dead letters (test_hostile_inputs); only inputs where no file has it are refused."""
    good, other, bad = tmp_path / "a.jsonl", tmp_path / "b.csv", tmp_path / "c.jsonl"
    good.write_text('{"id": "1", "text": "hello"}\n')
    other.write_bytes(_inputs_with_body()["posts.csv"])
    bad.write_bytes(b"not json\n")  # no record to tell from: says nothing
    labeling.check_text_field([str(other), str(bad), str(good)], FieldMap())
    with pytest.raises(labeling.UsageError, match=r"none of 2 files has it; the first, .*b.csv, has the columns "
                                                  r"id, body, lang; .*--text-field body"):
        labeling.check_text_field([str(other), str(bad), str(other)], FieldMap())
    many = ",".join(f"c{i}" for i in range(25))
    (tmp_path / "wide.csv").write_text(f"{many}\n" + ",".join("x" * i for i in range(25)) + "\n")
    with pytest.raises(labeling.UsageError, match=r"the columns c0, .*, c19 \(\+5 more\);.*--text-field c24\)$"):
        labeling.check_text_field([str(tmp_path / "wide.csv")], FieldMap())


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


def test_a_flagged_partition_is_not_skipped_by_skip_if_done(tmp_path, tiny_checkpoints, capsys):
    content = b'{"id": "1", "body": "hello", "text": 3}\n'  # a text field, but no text: dead-lettered
    code, _ = _main(tmp_path, tiny_checkpoints, "posts.jsonl", content)
    assert code == 3
    err = capsys.readouterr().err
    assert "sentiment [en (Latin script)]: 0 posts labeled" in err
    assert "sentiment: " not in err  # no label line for nothing labeled (it said "negative 0.0% · positive 0.0%")
    code, out = _main(tmp_path, tiny_checkpoints, "posts.jsonl", content, "--skip-if-done", "--text-field", "body")
    assert code == 0 and json.loads((out / partition.MANIFEST).read_text())["rows_written"] == 1
    assert "sentiment: " in capsys.readouterr().err
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
