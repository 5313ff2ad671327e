"""The CUDA path (issue 11), marked `gpu` and skipped without CUDA; the comparison helpers run on
CPU too (the same tests with --device cpu), so their logic is proven before they meet a GPU.

- scores from run() with --device cuda (bf16 autocast) against a plain fp32 CPU forward pass, on
  mixed-length texts, for each of the four heads;
- a real CUDA out-of-memory (the process's allocator capped between what small and oversized
  sub-batches need) is halved and retried: every record labeled or dead-lettered, oom_splits > 0;
- multi_processing with 4 workers, the model shared across them, gives the in-memory rows.

On the GPU machine: `python3 -m pytest -q -m gpu tests/test_gpu.py` (benchmarks/gpu_session.sh).
"""
from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch

from models.classifiers.politics import TOPICS as POLITICS_TOPICS
from models.tiny_checkpoints import EMOTION_LABELS
from pipelines.labeling import counter_values
from pipelines.label_corpus import run
from tests.test_multiworker import WORKER_LOG_RELAY, read_rows, sample_posts
from tests.test_pipeline import mixed_length_texts, read_dead_letters, read_labels, reference_probabilities, write_jsonl
from transforms.cleaning import clean_text

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, needs_cuda])]

# Largest score difference from the fp32 CPU reference, per device. CPU runs fp32: only summation
# order differs (1e-4, as in tests/test_pipeline.py). CUDA runs the matmuls under bf16 autocast: bf16
# keeps 8 significant bits (relative rounding 2^-9 ~ 0.002 per operand), accumulation is fp32, and
# the tiny models have 2 layers with logits of order 1, so logit errors stay within a few hundredths;
# a probability moves at most 0.25 (sigmoid) or 0.5 (softmax) per unit of logit, hence 0.02 on every
# score, the bound tests/test_throughput_correctness.py holds CPU bf16 autocast to.
SCORE_BOUND = {"cpu": 1e-4, "cuda": 0.02}


def expected_scores(name: str, checkpoint: str, texts: list[str]) -> dict[str, np.ndarray]:
    """Score column -> values for `texts`, from a plain fp32 forward pass on CPU, one text at a time."""
    logits = torch.tensor(reference_probabilities(checkpoint, texts))
    if name == "politics":
        probs = torch.softmax(logits.view(len(texts), len(POLITICS_TOPICS), 4), dim=-1).max(-1).values.numpy()
        return {f"politics_{topic}_score": probs[:, t] for t, topic in enumerate(POLITICS_TOPICS)}
    if name == "stars":
        return {"stars_score": torch.sigmoid(logits).max(-1).values.numpy()}
    if name == "sentiment":
        return {"sentiment_score": torch.softmax(logits, -1).max(-1).values.numpy()}
    probs = torch.sigmoid(logits).numpy()
    return {f"emotion_{label}": probs[:, i] for i, label in enumerate(EMOTION_LABELS)}


def largest_score_gap(rows_by_id: dict, ids: list[str], expected: dict[str, np.ndarray]) -> float:
    """The largest |ours - reference| over these rows and score columns (inf for a missing score)."""
    worst = 0.0
    for column, values in expected.items():
        for row_id, value in zip(ids, values):
            ours = rows_by_id[row_id][column]
            worst = max(worst, math.inf if ours is None else abs(ours - float(value)))
    return worst


def assert_rows_agree(left: list[dict], right: list[dict], tol: float) -> None:
    """Same ids in the same order, same columns, floats within tol, everything else equal."""
    assert [r["id"] for r in left] == [r["id"] for r in right]
    for a, b in zip(left, right):
        assert a.keys() == b.keys()
        for column, x in a.items():
            y = b[column]
            if isinstance(x, float) and isinstance(y, float):
                assert abs(x - y) <= tol, (a["id"], column, x, y)
            else:
                assert x == y, (a["id"], column, x, y)


# ---------------------------------------------------------------- scores against fp32 on CPU

@pytest.fixture(scope="module", params=DEVICES)
def labeled_on(request, tmp_path_factory, tiny_models_file):
    """All four classifiers over 160 mixed-length texts (1 to 2,000 characters), small batches and
    budgets so that sorting, sub-batching, padding and order restoration are all exercised."""
    device = request.param
    tmp = tmp_path_factory.mktemp(f"scores-{device}")
    texts = mixed_length_texts(160, seed=23)
    write_jsonl(tmp / "posts.jsonl", [{"id": f"t{i}", "text": t} for i, t in enumerate(texts)])
    run(["--input", str(tmp / "posts.jsonl"), "--output", str(tmp / "out"), "--models", tiny_models_file,
         "--device", device, "--batch-size", "50", "--max-tokens-per-batch", "900", "--max-items-per-batch", "9",
         "--all-languages"])
    by_id = {row["id"]: row for row in read_labels(tmp / "out").to_pylist()}
    ids = [f"t{i}" for i, t in enumerate(texts) if clean_text(t)]
    return device, by_id, ids


@pytest.mark.parametrize("name", ["politics", "stars", "sentiment", "emotion"])
def test_scores_match_an_fp32_cpu_forward_pass_within_the_bound(labeled_on, tiny_checkpoints, name):
    device, by_id, ids = labeled_on
    expected = expected_scores(name, tiny_checkpoints[name], [by_id[i]["clean_text"] for i in ids])
    gap = largest_score_gap(by_id, ids, expected)
    assert gap <= SCORE_BOUND[device], f"{name} on {device}: largest score difference {gap:.2e}"


def test_the_gap_helper_sees_a_wrong_score_and_a_missing_one(tiny_checkpoints):
    texts = ["the vote today", "酒店 很好"]
    expected = expected_scores("sentiment", tiny_checkpoints["sentiment"], texts)
    rows = {"a": {"sentiment_score": float(expected["sentiment_score"][0])},
            "b": {"sentiment_score": float(expected["sentiment_score"][1]) + 0.03}}
    assert largest_score_gap(rows, ["a", "b"], expected) == pytest.approx(0.03, abs=1e-6)
    rows["b"]["sentiment_score"] = None
    assert largest_score_gap(rows, ["a", "b"], expected) == math.inf


def test_rows_agree_within_the_tolerance_and_not_beyond():
    left = [{"id": "a", "stars": 3, "stars_score": 0.5, "emotions": ["joy"]}]
    assert_rows_agree(left, [{"id": "a", "stars": 3, "stars_score": 0.5009, "emotions": ["joy"]}], tol=1e-3)
    for changed in ({"stars_score": 0.502}, {"stars": 4}, {"emotions": []}, {"id": "b"}):
        with pytest.raises(AssertionError):
            assert_rows_agree(left, [{**left[0], **changed}], tol=1e-3)


# ---------------------------------------------------------------- a real CUDA out-of-memory

def _label_long_posts(tmp_path, tiny_models_file, name, budget_args):
    # Every post is cut to the model's longest input: equal lengths, so the oversized budget puts all
    # 256 x ~510 tokens in one pass (no padding for the planner to avoid by cutting).
    posts = [{"id": f"p{i}", "text": f"post {i}: " + "the vote and the economy today " * 150} for i in range(256)]
    write_jsonl(tmp_path / "long.jsonl", posts)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    result = run(["--input", str(tmp_path / "long.jsonl"), "--output", str(tmp_path / name), "--models",
                  tiny_models_file, "--only", "emotion", "--device", "cuda", "--all-languages",
                  "--batch-size", "256", *budget_args])
    return result, len(posts), torch.cuda.max_memory_allocated()


@pytest.mark.gpu
@needs_cuda
def test_a_real_cuda_out_of_memory_is_halved_and_retried(tmp_path, tiny_models_file):
    """In memory, the shared model lives in this process, so capping this process's allocator caps
    it. First measure what a small sub-batch (8 posts) and an oversized one (all 256 posts of ~510
    tokens in one pass) need, then cap the allocator halfway between and run the oversized
    budget again: it must run out of memory for real, halve, and label every post."""
    small, n, small_peak = _label_long_posts(tmp_path, tiny_models_file, "small", ["--max-items-per-batch", "8"])
    _, _, big_peak = _label_long_posts(tmp_path, tiny_models_file, "big",
                                       ["--max-tokens-per-batch", "10000000", "--max-items-per-batch", "100000"])
    assert big_peak > 2 * small_peak, f"cannot provoke an OOM: peaks {small_peak} (small) and {big_peak} (big)"
    total = torch.cuda.get_device_properties(0).total_memory
    try:
        torch.cuda.set_per_process_memory_fraction((small_peak + big_peak) / 2 / total)
        capped, _, _ = _label_long_posts(tmp_path, tiny_models_file, "capped",
                                         ["--max-tokens-per-batch", "10000000", "--max-items-per-batch", "100000"])
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    counters = {name: value for (_, name), value in counter_values(capped).items()}
    assert counters["oom_splits"] > 0
    assert counters["records_read"] == counters["rows_written"] + counters["dead_lettered"] == n
    rows = {r["id"]: r for r in read_labels(tmp_path / "capped").to_pylist()}
    dead = {json.loads(d["raw"])["id"] for d in read_dead_letters(tmp_path / "capped")}
    assert set(rows) | dead == {f"p{i}" for i in range(n)} and not set(rows) & dead
    reference = {r["id"]: r for r in read_labels(tmp_path / "small").to_pylist()}
    labeled = [i for i in rows if rows[i]["emotions"] is not None]
    assert labeled  # halving reached a size that fits
    for row_id in labeled:
        for label in EMOTION_LABELS:
            column = f"emotion_{label}"
            assert abs(rows[row_id][column] - reference[row_id][column]) <= SCORE_BOUND["cuda"]
    assert counter_values(small).get(("classifier_emotion", "oom_splits"), 0) == 0


# ---------------------------------------------------------------- worker processes sharing the model

@pytest.mark.gpu
@needs_cuda
def test_four_worker_processes_sharing_the_model_give_the_in_memory_rows(tmp_path, tiny_models_file, caplog):
    """One text per pass (--max-items-per-batch 1): every pass has the same shape in both runs, so
    the same kernels run and the rows agree to rounding whichever process holds the model."""
    posts = sample_posts(200) + [{"id": "zz-empty", "text": ""}]
    write_jsonl(tmp_path / "posts.jsonl", posts)

    def label(output, mode):
        run(["--input", str(tmp_path / "posts.jsonl"), "--output", str(tmp_path / output), "--models",
             tiny_models_file, "--device", "cuda", "--batch-size", "32", "--max-items-per-batch", "1",
             "--all-languages", *mode])
        return read_rows(str(tmp_path / output))

    in_memory = label("in_memory", ["--direct_running_mode", "in_memory"])
    caplog.set_level(logging.INFO, logger=WORKER_LOG_RELAY)
    four = label("four", ["--direct_running_mode", "multi_processing", "--direct_num_workers", "4"])
    relayed = [r.getMessage() for r in caplog.records if r.name == WORKER_LOG_RELAY]
    assert sum("sdk harness starting" in m for m in relayed) == 4
    assert len(in_memory) == len(posts)
    assert all(r["sentiment"] in ("negative", "positive") for r in in_memory if r["clean_text"])
    assert_rows_agree(in_memory, four, tol=1e-3)
