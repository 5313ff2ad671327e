"""Whatever arrives, every record ends as a labeled row or a dead letter with its reason,
the counts reconcile, and a partition is either complete or clearly not."""
from __future__ import annotations

import gzip
import json
import os
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.label_corpus import run
from tests.test_pipeline import read_dead_letters, read_labels
from transforms import partition
from transforms.records import DeadLetter, FieldMap, iter_file_records, to_record


def jl(*records) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r, ensure_ascii=False).encode()) + b"\n"
                    for r in records)


def truncated_gzip() -> bytes:
    whole = gzip.compress(jl(*[{"id": f"gz{i}", "text": f"readable post {i} " + "x" * 200} for i in range(400)]))
    return whole[: len(whole) // 2]


def parquet_with_int_text() -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"id": ["pq1", "pq2"], "text": [1, 2]}), sink)
    return sink.getvalue().to_pybytes()


# file name -> bytes; expectations below refer to ids (rows) or file names (dead letters)
HOSTILE_FILES = {
    "malformed.jsonl": jl({"id": "ok1", "text": "fine"}, b'{"id": "bad", "text": "unterminated'),
    "bad_utf8.jsonl": jl(b'{"id": "u1", "text": "caf\xe9 \xff\xfe"}', {"id": "ok2", "text": "after bad bytes"}),
    "bom.jsonl": b"\xef\xbb\xbf" + jl({"id": "bom1", "text": "starts with a byte order mark"}),
    "not_objects.jsonl": jl([1, 2], 42, "a string", None),
    "text_types.jsonl": jl({"id": "n1", "text": None}, {"id": "n2", "text": 7}, {"id": "n3", "text": ["a"]},
                           {"id": "n4"}),
    "empty.jsonl": b"",
    "blank_lines.jsonl": b"\n   \n\t\n\r\n",
    "quoted_newline.csv": b'id,text\ncsv1,"line one\nline two, with a comma"\n',
    "missing_column.csv": b"id,body\ncsv2,no text column here\n",
    "int_text.parquet": parquet_with_int_text(),
    "huge.jsonl": jl({"id": "huge1", "text": "word " * 200_000}),  # 1 MB post
    "only_emoji.jsonl": jl({"id": "emoji1", "text": "😂👍🏽👨‍👩‍👧🏳️‍🌈"}),
    "only_urls.jsonl": jl({"id": "urls1", "text": "@a @b https://x.co/1 www.y.org bit.ly/z"}),
    "weird_chars.jsonl": jl({"id": "ctrl1", "text": "bell\x07 rtl\u200f\u202e text zwj\u200d a" + "\u0301" * 5000},
                            {"id": "rtl1", "text": "\u05e9\u05dc\u05d5\u05dd \u200fworld"}),
    "duplicates.jsonl": jl({"id": "dup", "text": "first copy"}, {"id": "dup", "text": "second copy"}),
    "truncated.jsonl.gz": truncated_gzip(),
    # observed on main before issue 10: each of these took the whole job down or lost records
    "surrogates.jsonl": (b'{"id": "sur\\ud800", "text": "lone \\udfff surrogate"}\n'
                         b'{"id": "sur2", "text": "pair \\ud83d\\ude00 ok"}\n'),
    "separators.jsonl": "[\"\u2028 line \u2029 para \u0085 next\"]\n".encode(),
    "surplus_cells.csv": b"id,text\ncsv3,fine\ncsv4,two,cells too many\n",
    "unclosed_quote.csv": b'id,text\ncsv5,"never closed\ncsv6,after the quote\n',
}
LABELED_IDS = {"ok1", "ok2", "bom1", "csv1", "huge1", "emoji1", "ctrl1", "rtl1", "sur\ufffd", "sur2", "csv3",
               "csv6"}
NULL_LABEL_IDS = {"urls1"}  # empty after cleaning: kept, labels null
DEAD = {  # file -> reasons expected among its dead letters
    "malformed.jsonl": ["invalid JSON"],
    "bad_utf8.jsonl": ["invalid UTF-8"],
    "not_objects.jsonl": ["record is a JSON list, not an object", "record is a JSON int, not an object",
                          "record is a JSON str, not an object", "record is a JSON null, not an object"],
    "text_types.jsonl": ["'text' is null, not a string", "'text' is int, not a string",
                         "'text' is list, not a string", "no 'text' field"],
    "missing_column.csv": ["no 'text' field"],
    "int_text.parquet": ["'text' is int, not a string", "'text' is int, not a string"],
    "separators.jsonl": ["record is a JSON list, not an object"],
    "surplus_cells.csv": ["CSV row has 3 cells but the header has 2"],
    "unclosed_quote.csv": ["CSV record unreadable"],
}


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, tiny_checkpoints):
    tmp = tmp_path_factory.mktemp("hostile")
    (tmp / "in").mkdir()
    for name, data in HOSTILE_FILES.items():
        (tmp / "in" / name).write_bytes(data)
    out = tmp / "out"
    run(["--input", str(tmp / "in" / "*"), "--output", str(out), "--only", "sentiment,emotion",
         "--model", f"sentiment={tiny_checkpoints['sentiment']}", "--model", f"emotion={tiny_checkpoints['emotion']}"])
    rows = read_labels(out).to_pylist()
    with open(out / partition.MANIFEST) as handle:
        manifest = json.load(handle)
    return rows, read_dead_letters(out), manifest


def test_labeled_hostile_records(hostile_run):
    rows, _, _ = hostile_run
    by_id = {}
    for row in rows:
        by_id.setdefault(row["id"], []).append(row)
    for row_id in LABELED_IDS:
        (row,) = by_id[row_id]
        assert row["sentiment"] in ("negative", "positive") and isinstance(row["emotions"], list), row_id
    assert by_id["csv1"][0]["text"] == "line one\nline two, with a comma"
    assert by_id["emoji1"][0]["clean_text"].startswith(":face_with_tears_of_joy:")
    assert "\x07" not in by_id["ctrl1"][0]["clean_text"]
    (urls,) = by_id["urls1"]
    assert urls["clean_text"] == "" and urls["sentiment"] is None and urls["emotions"] is None
    assert sorted(r["text"] for r in by_id["dup"]) == ["first copy", "second copy"]
    assert by_id["sur\ufffd"][0]["text"] == "lone \ufffd surrogate"  # repaired, not dead-lettered
    assert by_id["sur2"][0]["text"] == "pair \U0001f600 ok"
    assert by_id["csv6"][0]["text"] == "after the quote"  # not swallowed by the quote above it


def test_dead_letters_carry_their_reasons(hostile_run):
    _, dead, _ = hostile_run
    for name, reasons in DEAD.items():
        found = sorted(d["reason"] for d in dead if os.path.basename(d["source"]) == name)
        assert [any(r.startswith(e) for r in found) for e in reasons] == [True] * len(reasons), (name, found)
        assert len(found) == len(reasons), (name, found)
    raw_bad_utf8 = [d["raw"] for d in dead if d["source"].endswith("bad_utf8.jsonl")]
    assert raw_bad_utf8 == ['{"id": "u1", "text": "caf\\xe9 \\xff\\xfe"}']
    (separators,) = [d["raw"] for d in dead if d["source"].endswith("separators.jsonl")]
    assert separators == '["\u2028 line \u2029 para \u0085 next"]'  # read back whole


def test_truncated_gzip_keeps_what_was_readable_and_names_the_file(hostile_run):
    rows, dead, manifest = hostile_run
    gz_rows = [r for r in rows if r["id"].startswith("gz")]
    assert 0 < len(gz_rows) < 400
    assert [r["id"] for r in sorted(gz_rows, key=lambda r: int(r["id"][2:]))] == [f"gz{i}" for i in range(len(gz_rows))]
    (broken,) = [d for d in dead if d["source"].endswith("truncated.jsonl.gz")]
    assert broken["position"] is None and "unreadable after record" in broken["reason"]
    assert [f["source"] for f in manifest["files_broken_off"]] == [broken["source"]]


def test_manifest_reconciles_and_counts_duplicates(hostile_run):
    rows, dead, manifest = hostile_run
    record_letters = [d for d in dead if d["position"] is not None]
    assert manifest["rows_written"] == len(rows)
    assert manifest["dead_lettered"] == len(record_letters)
    assert manifest["records_read"] == len(rows) + len(record_letters)
    assert manifest["duplicate_ids"] == 1
    assert manifest["empty_text_rows"] == 1
    assert manifest["inferences"]["sentiment"] == len([r for r in rows if r["clean_text"]])  # what the model ran on
    assert sum(manifest["dead_lettered_by_reason"].values()) == len(record_letters)


# ---- property: random bytes as JSON Lines -> read = records + dead letters ----

@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=60).filter(lambda b: b"\n" not in b), max_size=30))
def test_random_bytes_every_nonblank_line_is_a_record_or_a_dead_letter(lines):
    import io

    data = b"\n".join(lines) + b"\n"
    records = letters = 0
    for item in iter_file_records("random.jsonl", io.BytesIO(data)):
        if not isinstance(item, DeadLetter):
            item = to_record(item[1], FieldMap(), {}, "random.jsonl", item[0], item[2])
        if isinstance(item, DeadLetter):
            letters += 1
        else:
            records += 1
    expected = 0
    for i, line in enumerate(lines):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            expected += 1  # undecodable: a dead letter
            continue
        expected += bool((text.lstrip("\ufeff") if i == 0 else text).strip())  # blank lines are not records
    assert records + letters == expected


def test_random_bytes_through_the_pipeline_reconcile(tmp_path, tiny_checkpoints):
    rng = random.Random(3)
    lines = [bytes(rng.randrange(256) for _ in range(rng.randrange(40))).replace(b"\n", b"") for _ in range(150)]
    lines += [json.dumps({"id": f"v{i}", "text": f"valid {i}"}).encode() for i in range(50)]
    rng.shuffle(lines)
    (tmp_path / "r.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    run(["--input", str(tmp_path / "r.jsonl"), "--output", str(tmp_path / "out"), "--only", "sentiment",
         "--max-dead-letter-share", "1",
         "--model", f"sentiment={tiny_checkpoints['sentiment']}"])
    manifest = json.loads((tmp_path / "out" / partition.MANIFEST).read_text())
    assert manifest["records_read"] == manifest["rows_written"] + manifest["dead_lettered"]
    assert manifest["rows_written"] >= 50
    assert len(read_labels(tmp_path / "out")) == manifest["rows_written"]
