"""The labeling pipeline end to end on the DirectRunner, checked against independent references:
a plain transformers forward pass for the scores, pyarrow's reader for the files."""
from __future__ import annotations

import csv
import glob
import gzip
import json
import os
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from models.checkpoints import CheckpointError
from models.classifiers.politics import CLASSES as POLITICS_CLASSES, TOPICS as POLITICS_TOPICS
from models.tiny_checkpoints import EMOTION_LABELS, build_tiny_checkpoint
from pipelines.label_corpus import SuspectRun, run
from pipelines.labeling import counter_values
from transforms.cleaning import clean_text


def read_labels(out_dir) -> pa.Table:
    files = sorted(glob.glob(os.path.join(out_dir, "labels-*.parquet")))
    assert files, f"no Parquet written under {out_dir}"
    return pa.concat_tables([pq.read_table(f) for f in files])


def read_dead_letters(out_dir) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(os.path.join(out_dir, "_errors", "*.jsonl"))):
        with open(path, encoding="utf-8") as handle:
            rows += [json.loads(line) for line in handle if line.strip()]
    return rows


def expected_fields(kept: dict[str, pa.DataType]) -> dict[str, pa.DataType]:
    """The output table of docs/output-schema.md, written out independently of the code under test."""
    fields = {"id": pa.string(), **kept, "text": pa.string(), "lang": pa.string(), "clean_text": pa.string()}
    for topic in POLITICS_TOPICS:
        fields[f"politics_{topic}"] = pa.string()
        fields[f"politics_{topic}_score"] = pa.float32()
    fields.update({"stars": pa.int8(), "stars_score": pa.float32(), "sentiment": pa.string(),
                   "sentiment_score": pa.float32(), "emotions": pa.list_(pa.string())})
    fields.update({f"emotion_{label}": pa.float32() for label in EMOTION_LABELS})
    return fields


def mixed_length_texts(n: int, seed: int = 7) -> list[str]:
    """Texts from 1 to 2000 characters (log-uniform), with URLs, mentions, emoji and CJK."""
    rng = random.Random(seed)
    pieces = ["the", "vote", "economy", "happy", "sad", "great", "@user", "https://t.co/x1", "😂", "👍🏽",
              "酒店", "很好", "delivery", "slow", "corruption", "&amp;", "love", "hate", "!!", "rakyat"]
    texts = []
    for i in range(n):
        target = int(round(np.exp(rng.uniform(0, np.log(2000)))))
        words = []
        while sum(len(w) + 1 for w in words) < target:
            words.append(rng.choice(pieces))
        texts.append(" ".join(words)[:target] or "a")
    texts[:4] = ["a", "@only_a_mention https://only.a/url", "x" * 2000, "好"]
    return texts


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write((record if isinstance(record, str) else json.dumps(record, ensure_ascii=False)) + "\n")


def reference_probabilities(checkpoint_dir: str, texts: list[str]) -> np.ndarray:
    """A plain transformers forward pass, one text at a time, no batching or padding."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint_dir)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint_dir).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            rows.append(model(**tokenizer(text, truncation=True, return_tensors="pt")).logits[0].numpy())
    return np.stack(rows)


@pytest.fixture(scope="module")
def parity_run(tmp_path_factory, tiny_models_file):
    """All four classifiers over 220 mixed-length texts, with small batches and token budgets
    so that sorting, sub-batching, padding and order restoration are all exercised."""
    tmp = tmp_path_factory.mktemp("parity")
    texts = mixed_length_texts(220)
    write_jsonl(tmp / "posts.jsonl", [{"id": f"t{i}", "text": t} for i, t in enumerate(texts)])
    out = tmp / "out"
    run(["--input", str(tmp / "posts.jsonl"), "--output", str(out), "--models", tiny_models_file,
         "--device", "cpu", "--batch-size", "50", "--max-tokens-per-batch", "600", "--max-items-per-batch", "7",
         "--all-languages", "--cpu-backend", "torch"])  # the plain forward pass's arithmetic, compared at fp32 rounding
    table = read_labels(out).to_pylist()
    by_id = {row["id"]: row for row in table}
    return texts, by_id, out


def test_every_text_becomes_one_row_with_its_own_text(parity_run):
    texts, by_id, _ = parity_run
    assert len(by_id) == len(texts)
    for i, text in enumerate(texts):
        assert by_id[f"t{i}"]["text"] == text
        assert by_id[f"t{i}"]["clean_text"] == clean_text(text)


def test_schema_is_the_design_table_and_metadata_names_checkpoints(parity_run, tiny_checkpoints):
    _, _, out = parity_run
    schema = pq.read_schema(glob.glob(os.path.join(out, "labels-*.parquet"))[0])
    assert {f.name: f.type for f in schema} == expected_fields({})
    metadata = {k.decode(): v.decode() for k, v in schema.metadata.items()}
    for name, path in tiny_checkpoints.items():
        assert metadata[f"label_corpus.{name}.checkpoint"] == path
        assert metadata[f"label_corpus.{name}.revision"].startswith("sha256:")


def _present(texts, by_id):
    ids = [f"t{i}" for i, t in enumerate(texts) if clean_text(t)]
    return ids, [by_id[i]["clean_text"] for i in ids]


def test_empty_after_cleaning_rows_have_null_labels(parity_run):
    _, by_id, _ = parity_run
    row = by_id["t1"]
    assert row["clean_text"] == ""
    assert row["sentiment"] is None and row["stars"] is None and row["emotions"] is None
    assert all(row[f"politics_{t}"] is None for t in POLITICS_TOPICS)


def test_politics_scores_match_plain_forward_pass(parity_run, tiny_checkpoints):
    texts, by_id, _ = parity_run
    ids, cleaned = _present(texts, by_id)
    logits = torch.tensor(reference_probabilities(tiny_checkpoints["politics"], cleaned))
    probs = torch.softmax(logits.view(len(ids), 12, 4), dim=-1).numpy()
    for row_id, p in zip(ids, probs):
        for t, topic in enumerate(POLITICS_TOPICS):
            assert by_id[row_id][f"politics_{topic}"] == POLITICS_CLASSES[int(p[t].argmax())]
            assert by_id[row_id][f"politics_{topic}_score"] == pytest.approx(float(p[t].max()), abs=1e-4)


def test_stars_scores_match_plain_forward_pass(parity_run, tiny_checkpoints):
    texts, by_id, _ = parity_run
    ids, cleaned = _present(texts, by_id)
    probs = torch.sigmoid(torch.tensor(reference_probabilities(tiny_checkpoints["stars"], cleaned))).numpy()
    for row_id, p in zip(ids, probs):
        assert by_id[row_id]["stars"] == int(p.argmax()) + 1  # id2label Star_1..Star_5
        assert by_id[row_id]["stars_score"] == pytest.approx(float(p.max()), abs=1e-4)


def test_sentiment_scores_match_plain_forward_pass(parity_run, tiny_checkpoints):
    texts, by_id, _ = parity_run
    ids, cleaned = _present(texts, by_id)
    probs = torch.softmax(torch.tensor(reference_probabilities(tiny_checkpoints["sentiment"], cleaned)), -1)
    for row_id, p in zip(ids, probs.numpy()):
        assert by_id[row_id]["sentiment"] == ("negative", "positive")[int(p.argmax())]
        assert by_id[row_id]["sentiment_score"] == pytest.approx(float(p.max()), abs=1e-4)


def test_emotion_scores_match_plain_forward_pass(parity_run, tiny_checkpoints):
    texts, by_id, _ = parity_run
    ids, cleaned = _present(texts, by_id)
    probs = torch.sigmoid(torch.tensor(reference_probabilities(tiny_checkpoints["emotion"], cleaned))).numpy()
    for row_id, p in zip(ids, probs):
        row = by_id[row_id]
        for label, value in zip(EMOTION_LABELS, p):
            assert row[f"emotion_{label}"] == pytest.approx(float(value), abs=1e-4)
        assert row["emotions"] == [label for label, value in zip(EMOTION_LABELS, p) if value >= 0.5]


# ---- inputs: JSONL, CSV, Parquet, with broken records ----

GOOD = [
    {"post_id": "a1", "body": "great vote today @user 😂", "lang": "en", "likes": 3},
    {"post_id": "a2", "body": "酒店房间很干净", "lang": "zh", "likes": 0},
    {"post_id": "a3", "body": "https://only.a/link", "lang": "en", "likes": 12},
    {"post_id": "a4", "body": "multi\nline, with \"quotes\"", "lang": "en", "likes": 7},
]


def write_input(tmp_path, fmt) -> tuple[str, int]:
    """Write GOOD plus broken records in one format; return the path and the broken-record count."""
    if fmt == "jsonl.gz":
        path = tmp_path / "posts.jsonl.gz"
        lines = [json.dumps(r, ensure_ascii=False) for r in GOOD]
        lines[1:1] = ['{"post_id": "b1", "body": ', '["not", "an", "object"]', '{"post_id": "b3", "body": null}',
                      '{"post_id": "b4", "lang": "en"}', "", '{"post_id": "b5", "body": 42}']
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        return str(path), 5
    if fmt == "csv":
        path = tmp_path / "posts.csv"
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["post_id", "body", "lang", "likes"])
            for r in GOOD:
                writer.writerow([r["post_id"], r["body"], r["lang"], r["likes"]])
            handle.write("b1\n")  # a row with missing columns: no body
        return str(path), 1
    path = tmp_path / "posts.parquet"
    bodies = [r["body"] for r in GOOD] + [None]
    table = pa.table({"post_id": [r["post_id"] for r in GOOD] + ["b1"], "body": bodies,
                      "lang": [r["lang"] for r in GOOD] + ["en"], "likes": [r["likes"] for r in GOOD] + [1]})
    pq.write_table(table, path)
    return str(path), 1


@pytest.mark.parametrize("fmt", ["jsonl.gz", "csv", "parquet"])
def test_formats_ids_kept_fields_dead_letters_and_counts(tmp_path, tiny_checkpoints, fmt):
    path, broken = write_input(tmp_path, fmt)
    out = tmp_path / "out"
    result = run(["--input", path, "--output", str(out), "--only", "sentiment",
                  "--model", f"sentiment={tiny_checkpoints['sentiment']}", "--id-field", "post_id",
                  "--text-field", "body", "--lang-field", "lang", "--keep-fields", "likes", "--device", "cpu",
                  "--max-dead-letter-share", "1"])  # jsonl.gz: 5 of 9 records are broken on purpose
    table = read_labels(out)
    dead = read_dead_letters(out)
    likes_type = pa.string() if fmt == "csv" else pa.int64()  # CSV has no types: strings as in the input
    assert {f.name: f.type for f in table.schema} == {
        "id": pa.string(), "text": pa.string(), "lang": pa.string(), "likes": likes_type,
        "clean_text": pa.string(), "sentiment": pa.string(), "sentiment_score": pa.float32()}
    rows = {r["id"]: r for r in table.to_pylist()}
    assert sorted(rows) == [r["post_id"] for r in GOOD]
    for record in GOOD:
        row = rows[record["post_id"]]
        assert row["text"] == record["body"]
        assert row["lang"] == record["lang"]
        assert row["likes"] == (str(record["likes"]) if fmt == "csv" else record["likes"])
    assert rows["a3"]["sentiment"] is None  # empty after cleaning: kept, label null
    assert rows["a1"]["sentiment"] in ("negative", "positive")
    assert rows["a2"]["sentiment"] is None  # a Chinese post: outside sentiment's languages
    assert len(dead) == broken
    assert all(d["reason"] and d["source"].endswith(os.path.basename(path)) for d in dead)
    counters = {name: value for (namespace, name), value in counter_values(result).items()
                if namespace == "label_corpus"}
    assert counters["records_read"] == counters["rows_written"] + counters["dead_lettered"]
    assert counters["records_read"] == len(GOOD) + broken
    assert counters["rows_written"] == table.num_rows


def test_dead_letter_reasons_name_the_problem(tmp_path, tiny_checkpoints):
    path, _ = write_input(tmp_path, "jsonl.gz")
    with pytest.raises(SuspectRun, match=r"5 of 9 records read .* were dead-lettered"):  # written, then flagged
        run(["--input", path, "--output", str(tmp_path / "out"), "--only", "sentiment", "--model",
             f"sentiment={tiny_checkpoints['sentiment']}", "--id-field", "post_id", "--text-field", "body"])
    reasons = {d["raw"]: d["reason"] for d in read_dead_letters(tmp_path / "out")}
    assert reasons['{"post_id": "b1", "body": '].startswith("invalid JSON")
    assert reasons['["not", "an", "object"]'] == "record is a JSON list, not an object"
    assert reasons['{"post_id": "b3", "body": null}'] == "'body' is null, not a string"
    assert reasons['{"post_id": "b4", "lang": "en"}'] == "no 'body' field"
    assert reasons['{"post_id": "b5", "body": 42}'] == "'body' is int, not a string"


def test_records_without_ids_get_a_stable_hash_of_their_text(tmp_path, tiny_checkpoints):
    write_jsonl(tmp_path / "p.jsonl", [{"text": "same words"}, {"text": "other words"}])
    for out in ("o1", "o2"):
        run(["--input", str(tmp_path / "p.jsonl"), "--output", str(tmp_path / out), "--only", "sentiment",
             "--model", f"sentiment={tiny_checkpoints['sentiment']}"])
    first, second = (sorted(read_labels(tmp_path / o).column("id").to_pylist()) for o in ("o1", "o2"))
    assert first == second and len(set(first)) == 2


def test_only_leaves_other_classifiers_columns_out(tmp_path, tiny_models_file):
    write_jsonl(tmp_path / "p.jsonl", [{"id": "1", "text": "hello world"}])
    run(["--input", str(tmp_path / "p.jsonl"), "--output", str(tmp_path / "out"), "--models", tiny_models_file,
         "--only", "politics,emotion"])
    names = read_labels(tmp_path / "out").schema.names
    assert "politics_economy" in names and "emotion_joy" in names
    assert not [n for n in names if n.startswith(("stars", "sentiment"))]


# ---- checkpoints that do not fit are refused before any data is read ----

def test_wrong_label_count_is_refused_with_a_clear_message(tmp_path):
    bad = build_tiny_checkpoint("sentiment", tmp_path, num_labels=3)
    with pytest.raises(CheckpointError, match=r"'sentiment'.*needs a head with 2 labels.*has 3"):
        run(["--input", str(tmp_path / "missing-*.jsonl"), "--output", str(tmp_path / "out"),
             "--only", "sentiment", "--model", f"sentiment={bad}"])


def test_politics_head_must_have_48_logits(tmp_path):
    bad = build_tiny_checkpoint("politics", tmp_path, num_labels=12)
    with pytest.raises(CheckpointError, match=r"'politics'.*48 labels.*has 12"):
        run(["--input", "x.jsonl", "--output", str(tmp_path / "o"), "--only", "politics",
             "--model", f"politics={bad}"])


def test_checkpoint_without_tokenizer_is_refused(tmp_path):
    ckpt = build_tiny_checkpoint("stars", tmp_path)
    for name in os.listdir(ckpt):
        if name.startswith(("tokenizer", "vocab", "special_tokens")):
            os.remove(ckpt / name)
    with pytest.raises(CheckpointError, match=r"'stars'.*tokenizer"):
        run(["--input", "x.jsonl", "--output", str(tmp_path / "o"), "--only", "stars", "--model", f"stars={ckpt}"])


def test_unreachable_default_checkpoints_stop_the_job_before_reading(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError) as info:
        run(["--input", str(tmp_path / "no-such-input-*.jsonl"), "--output", str(tmp_path / "o")])
    message = str(info.value)
    assert "YagiASAFAS/MyPoliBERT-ver02" in message and "fikriau/praktikum-ai-modul6-robertalargefocal" in message
    assert "--model politics=/path/to/checkpoint" in message


def test_the_command_line_becomes_a_typed_config_and_the_library_labels_it(tmp_path, tiny_checkpoints):
    from models.classifier import InferenceOptions
    from pipelines.label_corpus import config_from_argv
    from pipelines.labeling import LabelConfig, label
    from transforms.cleaning import CleaningOptions
    from transforms.records import FieldMap

    config = config_from_argv([
        "--input", str(tmp_path / "{date}.jsonl"), "--output", str(tmp_path / "out-{date}"), "--date", "2026-12-01",
        "--model", f"sentiment={tiny_checkpoints['sentiment']}", "--only", "sentiment", "--text-field", "body",
        "--keep-fields", "user", "--languages", "sentiment=en,ms", "--device", "cpu", "--batch-size", "7",
        "--max-items-per-batch", "3", "--no-sort", "--cpu-threads", "1", "--url-token", "http", "--no-wait",
        "--runner", "DirectRunner"])
    assert config == LabelConfig(
        input=str(tmp_path / "2026-12-01.jsonl"), output=str(tmp_path / "out-2026-12-01"),
        checkpoints={"sentiment": tiny_checkpoints["sentiment"]}, routes={"sentiment": frozenset({"en", "ms"})},
        fields=FieldMap("id", "body", ("user",)),
        inference=InferenceOptions(device="cpu", batch_size=7, max_items_per_batch=3, sort_by_length=False,
                                   cpu_threads=1),
        cleaning=CleaningOptions(url_token="http"), date="2026-12-01", wait=False, beam_args=("--runner", "DirectRunner"))

    # The library, with a config built in code (no argv): the same run.
    write_jsonl(tmp_path / "posts.jsonl", [{"id": f"p{i}", "body": f"post {i} http://t.co/x", "user": f"u{i}"}
                                           for i in range(9)])
    out = tmp_path / "library"
    label(LabelConfig(input=str(tmp_path / "posts.jsonl"), output=str(out),
                      checkpoints={"sentiment": tiny_checkpoints["sentiment"]}, routes={"sentiment": None},
                      fields=FieldMap("id", "body", ("user",)), inference=InferenceOptions(device="cpu", batch_size=4),
                      cleaning=CleaningOptions(url_token="http")))
    rows = read_labels(out).to_pylist()
    assert sorted(r["id"] for r in rows) == [f"p{i}" for i in range(9)]
    assert all(r["clean_text"].endswith(" http") and r["user"] == "u" + r["id"][1:] and r["sentiment"] for r in rows)


def _column_table(path: str) -> list[tuple[str, str]]:
    """(column, type) rows of the output-column table of a Markdown file: the one headed `| column | type |`."""
    lines = open(path, encoding="utf-8").read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| column | type |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append((cells[0].strip("`"), cells[1]))
    return rows


def _table_row_of(name: str, kept: set[str]) -> str:
    """The row of the docs' column table that a written column belongs to."""
    if name in kept:
        return "kept fields"
    if name.startswith("politics_"):
        return "politics_<topic>_score" if name.endswith("_score") else "politics_<topic>"
    return "emotion_<label>" if name.startswith("emotion_") else name


@pytest.mark.parametrize("doc", ["README.md", "docs/output-schema.md"])
def test_the_docs_column_table_is_the_schema_the_job_writes_in_its_order(parity_run, doc):
    """Against the file the job wrote (all four classifiers) and, for kept fields, the schema it writes with."""
    from pipelines.labeling import output_schema

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    table = _column_table(os.path.join(root, doc))
    types = {"string": pa.string(), "float32": pa.float32(), "int8": pa.int8(), "list<string>": pa.list_(pa.string())}
    _, _, out = parity_run
    written = pq.read_schema(glob.glob(os.path.join(out, "labels-*.parquet"))[0])
    rows = {}
    for f in written:
        rows.setdefault(_table_row_of(f.name, set()), set()).add(f.type)
    assert [name for name, _ in table if name != "kept fields"] == list(rows)
    for name, kind in table:
        if name != "kept fields":
            assert rows[name] == {types[kind]}, name
    kept = output_schema({"likes": pa.int64(), "user": pa.string()}, {}).names
    base = [_table_row_of(name, {"likes", "user"}) for name in kept]
    assert [name for name, _ in table if name in base] == list(dict.fromkeys(base))
