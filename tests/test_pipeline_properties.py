"""Property-based runs of the whole pipeline: hypothesis writes JSON Lines, CSV and Parquet files
of arbitrary records (any JSON value, any Unicode including lone surrogates, line and paragraph
separators, NUL, very long strings, wrong types), run() labels them on the DirectRunner (in memory,
and with worker processes), and every record must end as exactly one row or one dead letter with
a reason, with a manifest that reconciles."""
from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from models.classifiers import PUBLISHED as SPECS
from pipelines.label_corpus import run
from transforms.language import runs_on, script_shares
from tests.test_pipeline import read_dead_letters, read_labels
from transforms import partition
from transforms.records import repair_strings

# Each example is a whole run (seconds): a failing one is reported as found, not shrunk for minutes.
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
HOSTILE_CHARS = ["\ud800", "\udfff", "\udc80", "\u2028", "\u2029", "\x85", "\x00", "\n", "\r", '"', ",",
                 "\ufeff", "\u200f", "😂", "&", " "]
# strings made of pieces, most of them hostile: a short run of hypothesis still meets them all
strings = st.lists(st.one_of(st.sampled_from(HOSTILE_CHARS), st.text(max_size=4)), max_size=8).map("".join)
texts = st.one_of(strings, st.sampled_from(["word " * 3000, "x" * 20000, "\u2028" * 500 + "late words"]))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | strings,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(strings, inner, max_size=3),
    max_leaves=6)
json_records = st.one_of(
    st.fixed_dictionaries({"id": st.one_of(st.none(), strings, json_values), "text": texts}),
    st.fixed_dictionaries({"text": texts}),
    st.fixed_dictionaries({"id": st.text(max_size=5), "text": json_values}),
    json_values)
# how a JSON record is written: escaped (valid UTF-8 whatever it holds) or raw (lone surrogates
# then make bytes that are not UTF-8)
jsonl_items = st.tuples(json_records, st.sampled_from(["escaped", "raw"]))
csv_rows = st.lists(st.tuples(strings, texts), max_size=8)
parquet_rows = st.lists(st.tuples(st.text(max_size=12), st.one_of(st.none(), st.text(max_size=60))), max_size=8)


def expected_jsonl(value, mode) -> str | None:
    """The text of the row this JSON record becomes, or None for a dead letter."""
    line = json.dumps(value, ensure_ascii=(mode == "escaped"))
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return None  # written as bytes that are not UTF-8: a dead letter
    value = json.loads(line)  # as JSON reads it back: an escaped high+low surrogate pair is one character
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        return None
    return repair_strings(value["text"])


def write_inputs(directory: Path, jsonl, csv_data, parquet_data) -> Counter:
    """The three files; returns the multiset of texts expected as rows (None: dead letters)."""
    expected = Counter()
    with open(directory / "a.jsonl", "wb") as handle:
        for value, mode in jsonl:
            line = json.dumps(value, ensure_ascii=(mode == "escaped"))
            handle.write(line.encode("utf-8", "surrogatepass") + b"\n")
            expected[expected_jsonl(value, mode)] += 1
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["id", "text"])
    for row_id, text in csv_data:
        writer.writerow([row_id, text])
        fits = all(not any("\ud800" <= c <= "\udfff" for c in cell) for cell in (row_id, text))
        expected[text if fits else None] += 1
    (directory / "b.csv").write_bytes(buffer.getvalue().encode("utf-8", "surrogatepass"))
    pq.write_table(pa.table({"id": pa.array([r[0] for r in parquet_data], pa.string()),
                             "text": pa.array([r[1] for r in parquet_data], pa.string())}), directory / "c.parquet")
    for _, text in parquet_data:
        expected[text] += 1
    return expected


def check_run(tiny_checkpoints, jsonl, csv_data, parquet_data, extra_args=()):
    directory = Path(tempfile.mkdtemp(prefix="i10-props-"))
    try:
        (directory / "in").mkdir()
        expected = write_inputs(directory / "in", jsonl, csv_data, parquet_data)
        out = directory / "out"
        run(["--input", str(directory / "in" / "*"), "--output", str(out), "--only", "sentiment",
             "--model", f"sentiment={tiny_checkpoints['sentiment']}", "--device", "cpu", "--allow-empty",
             "--max-dead-letter-share", "1", *extra_args])
        rows = read_labels(out).to_pylist() if list(out.glob("labels-*.parquet")) else []
        dead = read_dead_letters(out)
        manifest = json.loads((out / partition.MANIFEST).read_text())
        assert (out / partition.SUCCESS).exists()
        record_letters = [d for d in dead if d["position"] is not None]
        assert all(d["reason"] for d in dead)
        assert [d for d in dead if d["position"] is None] == []  # no file broke off
        assert Counter(r["text"] for r in rows) + Counter({None: len(record_letters)}) == expected
        assert manifest["records_read"] == sum(expected.values()) == len(rows) + len(record_letters)
        assert manifest["rows_written"] == len(rows) and manifest["dead_lettered"] == len(record_letters)
        for row in rows:
            assert isinstance(row["id"], str) and row["id"]
            # null exactly where there is no text to classify or the post is outside sentiment's languages
            routed_out = not runs_on(row["lang"], SPECS["sentiment"].languages, script_shares([row["clean_text"]])[0])
            assert (row["sentiment"] is None) == (not row["clean_text"] or routed_out)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), phases=NO_SHRINK)
@given(st.lists(jsonl_items, min_size=1, max_size=10), csv_rows, parquet_rows)
def test_any_records_in_memory_each_end_as_one_row_or_one_dead_letter(tiny_checkpoints, jsonl, csv_data,
                                                                        parquet_data):
    check_run(tiny_checkpoints, jsonl, csv_data, parquet_data)


@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck), phases=NO_SHRINK)
@given(st.lists(jsonl_items, min_size=1, max_size=10), csv_rows, parquet_rows)
def test_any_records_with_worker_processes_each_end_as_one_row_or_one_dead_letter(tiny_checkpoints, jsonl,
                                                                                  csv_data, parquet_data):
    check_run(tiny_checkpoints, jsonl, csv_data, parquet_data,
              ("--direct_running_mode", "multi_processing", "--direct_num_workers", "2"))
