"""Faults during inference: out-of-memory batches are halved and retried; a text that fails alone
goes to the dead letters; the run goes on and the counts reconcile."""
from __future__ import annotations

import json

import pytest
import torch

from models.classifier import run_forward
from pipelines.label_corpus import run
from pipelines.labeling import counter_values
from tests.test_pipeline import read_dead_letters, read_labels

POISON = "poison " * 40
CALLS: list[int] = []  # sub-batch sizes the forward pass below was given (the DirectRunner runs in this process)


def forward_that_runs_out_of_memory(loaded, arrays):
    """Injected into the run (module level: Beam pickles it by reference, so CALLS is this list)."""
    rows, width = arrays["input_ids"].shape
    CALLS.append(rows)
    if rows > 4 or width > 60:  # big batches fail; the poison text (long) fails even alone
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
    return run_forward(loaded, arrays)


def _label(tmp_path, checkpoint, name, forward=None):
    texts = [f"post number {i} about the vote" * (1 + i % 3) for i in range(30)] + [POISON]
    with open(tmp_path / "p.jsonl", "w") as handle:
        for i, text in enumerate(texts):
            handle.write(json.dumps({"id": f"r{i}", "text": text}) + "\n")
    result = run(["--input", str(tmp_path / "p.jsonl"), "--output", str(tmp_path / name), "--only", "sentiment",
                  "--model", f"sentiment={checkpoint}", "--device", "cpu", "--cpu-backend", "torch", "--batch-size", "31",
                  "--max-items-per-batch", "16"], forward=forward)
    return result, texts


def test_oom_batches_are_split_and_a_text_that_fails_alone_is_dead_lettered(tmp_path, tiny_checkpoints):
    _, texts = _label(tmp_path, tiny_checkpoints["sentiment"], "clean")
    expected = {r["id"]: r["sentiment_score"] for r in read_labels(tmp_path / "clean").to_pylist()}

    CALLS.clear()
    result, _ = _label(tmp_path, tiny_checkpoints["sentiment"], "oom", forward_that_runs_out_of_memory)

    rows = {r["id"]: r["sentiment_score"] for r in read_labels(tmp_path / "oom").to_pylist()}
    poison_id = f"r{len(texts) - 1}"
    assert set(rows) == set(expected) - {poison_id}
    for row_id, score in rows.items():
        assert score == pytest.approx(expected[row_id], abs=1e-5)
    dead = read_dead_letters(tmp_path / "oom")
    assert len(dead) == 1 and json.loads(dead[0]["raw"])["id"] == poison_id
    assert "out of memory" in dead[0]["reason"] and dead[0]["source"] == "classifier:sentiment"
    assert max(CALLS) > 4 and 1 in CALLS  # big batches were tried, then halved down to one text
    counters = {name: value for (_, name), value in counter_values(result).items()}
    assert counters["records_read"] == counters["rows_written"] + counters["dead_lettered"] == len(texts)
    manifest = json.loads((tmp_path / "oom" / "_manifest.json").read_text())
    assert manifest["inferences"] == {"sentiment": len(texts)}  # the model ran on the poison text too
    assert manifest["by_classifier"]["sentiment"] == {"labeled": len(rows), "skipped_language": 0}
    assert counters["oom_splits"] > 0
