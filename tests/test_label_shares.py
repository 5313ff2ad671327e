"""The run summary's label lines, computed with pyarrow (pipelines.label_shares), against the
report's figures computed with polars (pipelines.report.label_shares, the reference here); and a
labeling job run where polars and matplotlib cannot be imported, as on the GPU machine."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.classifiers import PUBLISHED as SPECS
from pipelines import console, report
from tests.test_report import labeled_table, write_partition

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKED = ("polars", "matplotlib")


def reference_lines(directory: str) -> list[str]:
    """The label lines from the partition read and counted with polars, as before pyarrow."""
    shares = report.label_shares(report.read_partition(directory))
    lines = []
    for classifier in dict.fromkeys(shares.get_column("classifier").to_list()):
        part = shares.filter(shares.get_column("classifier") == classifier)
        lines.append(console.label_line(classifier, list(zip(part.get_column("label").to_list(),
                                                             part.get_column("share").to_list()))))
    return lines


def many_emotions_table(n: int, seed: int, labels: list[str], never: set[str]) -> pa.Table:
    """Emotion columns only, for `labels` (more than a line shows); the labels in `never` reach
    their threshold on no row, so only their emotion_<label> column names them."""
    rng = np.random.default_rng(seed)
    head = SPECS["emotion"].head_for({"id2label": dict(enumerate(labels))})
    rows = []
    for i in range(n):
        row = {"id": f"e{seed}-{i}"}
        if rng.random() < 0.15:
            row.update(head.null_columns())
        else:
            row.update(head.to_columns(rng.normal(0, 2.5, size=(1, len(labels))).astype(np.float32))[0])
            row["emotions"] = [label for label in row["emotions"] if label not in never]
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=pa.schema([pa.field("id", pa.string()), *head.fields]))


def test_label_lines_equal_the_reports_figures(tmp_path):
    directory = write_partition(tmp_path / "four", labeled_table(300, seed=3), shards=3)
    lines = console.label_lines(directory)
    assert [line.split(":")[0] for line in lines] == ["politics", "stars", "sentiment", "emotion"]
    assert lines == reference_lines(directory)


def test_files_with_other_columns_unseen_labels_and_more_labels_than_a_line_shows(tmp_path):
    directory = tmp_path / "mixed"
    write_partition(directory, labeled_table(120, seed=5, classifiers=("stars", "sentiment")), shards=1)
    os.replace(directory / "labels-00000-of-00001.parquet", directory / "labels-a.parquet")
    labels = ["anger", "joy", "Very Happy", "sadness", "fear", "love", "pride", "relief", "grief", "awe", "calm"]
    pq.write_table(many_emotions_table(200, seed=6, labels=labels, never={"awe", "Very Happy"}),
                   directory / "labels-b.parquet")
    lines = console.label_lines(str(directory))
    assert lines == reference_lines(str(directory))
    emotion = next(line for line in lines if line.startswith("emotion: "))
    assert emotion.endswith("· (+3 more)")  # 11 labels, 8 shown; awe and very_happy count 0 and come last


def test_a_partition_without_text_and_one_too_large_and_none_at_all(tmp_path):
    empty = write_partition(tmp_path / "empty", labeled_table(40, seed=8, empty_share=1.0), shards=2)
    assert console.label_lines(empty) == reference_lines(empty)
    assert console.label_lines(empty)[1] == "stars: 1 0.0% · 2 0.0% · 3 0.0% · 4 0.0% · 5 0.0%"
    big = write_partition(tmp_path / "big", labeled_table(30, seed=9), shards=2)
    rows = sum(pq.ParquetFile(os.path.join(big, f)).metadata.num_rows for f in os.listdir(big))
    assert console.label_lines(big, max_rows=rows - 1) == [
        f"labels: {rows:,} rows; run python -m pipelines.report {big} for their distribution"]
    assert console.label_lines(str(tmp_path / "nothing")) == []


def test_a_labeling_job_needs_neither_polars_nor_matplotlib(tmp_path, tiny_models_file):
    """The whole job in a subprocess whose Python cannot import polars or matplotlib (a
    sitecustomize on PYTHONPATH puts None in sys.modules for both, as absent as on the GPU machine):
    it succeeds and prints the label lines the report's polars figures give."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(f"import sys\nsys.modules.update(dict.fromkeys({BLOCKED!r}))\n")
    posts = tmp_path / "posts.jsonl"
    texts = ["the vote was a great day for the economy", "prices are bad and the roads are worse",
             "酒店 很好 服务 一般", "", "la economía va mal", "what a lovely morning @user http://x.co 😂"]
    posts.write_text("".join(json.dumps({"id": f"p{i}", "text": texts[i % len(texts)] + f" {i}" * (i % 3)}) + "\n"
                             for i in range(48)), encoding="utf-8")
    output = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), ROOT]), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    probe = subprocess.run([sys.executable, "-c", "import polars"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr  # the shim takes effect
    result = subprocess.run([sys.executable, "-m", "pipelines.label_corpus", "--input", str(posts), "--output",
                             str(output), "--models", tiny_models_file, "--device", "cpu", "--num-shards", "2"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (output / "_SUCCESS").exists()
    printed = [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in result.stderr.splitlines()]
    names = ("politics: ", "stars: ", "sentiment: ", "emotion: ")
    expected = reference_lines(str(output))
    assert len(expected) == 4
    assert [line for line in printed if line.startswith(names)] == expected
