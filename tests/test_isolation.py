"""Row-level isolation of inference failures: whatever a sub-batch raises (not only out of
memory), it is split until the failing texts are found; only they fail, with the exception in
their reason, and every other text gets exactly the scores it gets in a clean run."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models.checkpoints import resolve
from models.classifier import InferenceFailure, InferenceOptions, load_classifier, run_forward

POISON = "zebra quokka xylophone"


@pytest.fixture(scope="module")
def loaded(tiny_checkpoints):
    return load_classifier(resolve("sentiment", tiny_checkpoints["sentiment"]),
                           InferenceOptions(device="cpu", cpu_backend="torch", max_items_per_batch=8))


TEXTS = [f"post {i} about the vote " * (1 + i % 4) for i in range(40)]


@pytest.mark.parametrize("error", [RuntimeError("CUDA error: device-side assert triggered"),
                                   IndexError("index out of range in self"), ValueError("shape mismatch")])
def test_any_sub_batch_failure_costs_only_the_texts_that_cause_it(loaded, error):
    expected, _ = loaded.classify(TEXTS)
    clean_ids = {i for ids in loaded.tokenizer(TEXTS)["input_ids"] for i in ids}
    poison_ids = set(loaded.tokenizer(POISON, add_special_tokens=False)["input_ids"]) - clean_ids
    assert poison_ids  # the fault is injected by a token no other text has
    texts = list(TEXTS)
    texts[7] = texts[31] = f"a {POISON} post"
    def forward(model, arrays):
        if poison_ids & set(arrays["input_ids"].ravel().tolist()):
            raise error
        return run_forward(model, arrays)

    rows, stats = replace(loaded, forward=forward).classify(texts)
    for i, row in enumerate(rows):
        if i in (7, 31):
            assert isinstance(row, InferenceFailure) and type(error).__name__ in row.reason
            assert str(error) in row.reason and "sentiment" in row.reason
        else:
            assert row["sentiment"] == expected[i]["sentiment"]
            assert row["sentiment_score"] == pytest.approx(expected[i]["sentiment_score"], abs=1e-6)
    assert stats["failure_splits"] > 0 and stats["oom_splits"] == 0


def test_a_forward_pass_returning_the_wrong_shape_is_a_failure_not_misplaced_scores(loaded):
    def forward(model, arrays):
        logits = run_forward(model, arrays)
        return logits[:-1] if len(logits) > 1 else logits  # loses a row unless alone

    rows, _ = replace(loaded, forward=forward).classify(TEXTS[:5])
    assert all(isinstance(row, dict) for row in rows)  # each text, alone, is scored


class FailingBackend:
    """The fast tokenizer's backend, raising on any batch with the poison text in it."""

    def __init__(self, backend):
        self.backend = backend

    def encode_batch(self, texts, **kwargs):
        if any(POISON in t for t in texts):
            raise Exception("Unk token `[UNK]` not found in the vocabulary")  # what tokenizers raises
        return self.backend.encode_batch(texts, **kwargs)

    def encode_batch_fast(self, texts, **kwargs):
        if any(POISON in t for t in texts):
            raise Exception("Unk token `[UNK]` not found in the vocabulary")
        return self.backend.encode_batch_fast(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self.backend, name)


class FailingTokenizer:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.backend_tokenizer = FailingBackend(tokenizer.backend_tokenizer)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def test_a_tokenizer_failure_costs_only_the_texts_it_fails_on(loaded):
    expected, _ = loaded.classify(TEXTS[:6])
    loaded = replace(loaded, tokenizer=FailingTokenizer(loaded.tokenizer))
    texts = TEXTS[:6]
    texts[2] = POISON
    rows, _ = loaded.classify(texts)
    assert isinstance(rows[2], InferenceFailure) and "tokenizer of sentiment failed" in rows[2].reason
    assert [r["sentiment_score"] for i, r in enumerate(rows) if i != 2] == pytest.approx(
        [r["sentiment_score"] for i, r in enumerate(expected) if i != 2], abs=1e-6)
    assert np.isfinite([r["sentiment_score"] for i, r in enumerate(rows) if i != 2]).all()


@pytest.mark.parametrize("ahead", [True, False], ids=["tokenizer-thread", "in-line"])
def test_tokenizing_on_the_tokenizer_thread_gives_the_same_rows_and_failures(loaded, tiny_checkpoints, monkeypatch,
                                                                           ahead):
    """classify_all tokenizes every classifier's texts on a thread of its own, ahead of the models,
    when a core is spare: the rows, the failures and the counts are those of tokenizing in line."""
    from models import batch_labeling
    from models.batch_labeling import LoadedClassifiers

    monkeypatch.setattr(batch_labeling, "tokenize_ahead", lambda classifiers: ahead)

    other = load_classifier(resolve("emotion", tiny_checkpoints["emotion"]), InferenceOptions(device="cpu", cpu_backend="torch"))
    poisoned = replace(loaded, tokenizer=FailingTokenizer(loaded.tokenizer))
    texts = TEXTS[:12]
    texts[4] = POISON
    expected = {"sentiment": poisoned.classify(texts), "emotion": other.classify(TEXTS)}
    results = LoadedClassifiers({"sentiment": poisoned, "emotion": other}).classify_all(
        {"sentiment": texts, "emotion": TEXTS, "politics": []})
    assert set(results) == {"sentiment", "emotion"}  # a classifier without texts is not run
    for name, (rows, stats) in results.items():
        want_rows, want_stats = expected[name]
        assert {k: v for k, v in stats.items() if k != "inference_us"} == \
            {k: v for k, v in want_stats.items() if k != "inference_us"}
        for row, want in zip(rows, want_rows, strict=True):
            if isinstance(want, InferenceFailure):
                assert row == want
            else:  # the same labels; scores equal to float rounding
                assert row.keys() == want.keys()
                for key, value in want.items():
                    assert row[key] == (pytest.approx(value, abs=1e-6) if isinstance(value, float) else value), key
    assert isinstance(results["sentiment"][0][4], InferenceFailure)
    model = LoadedClassifiers({"sentiment": loaded})
    model.classify_all({"sentiment": TEXTS[:3]})
    assert (model.tokenizer_thread is not None) == ahead


def test_tokenizing_ahead_only_where_a_core_is_spare_or_the_models_are_on_a_gpu(loaded, monkeypatch):
    import torch

    from models import batch_labeling

    threads = torch.get_num_threads()
    monkeypatch.setattr(batch_labeling, "worker_cores", lambda: threads + 1)
    assert batch_labeling.tokenize_ahead([loaded])
    monkeypatch.setattr(batch_labeling, "worker_cores", lambda: threads)
    assert not batch_labeling.tokenize_ahead([loaded])
    assert batch_labeling.tokenize_ahead([loaded, replace(loaded, device="cuda")])


def test_progress_is_ticked_after_each_sub_batch_and_adds_up_to_the_batch(tiny_checkpoints):
    """The labeled count grows during a batch (a line can come every 10 s however long a batch
    takes), failed texts included, and a batch ends at exactly its number of posts."""
    from pipelines.beam_steps import ClassifiersHandler

    class Recorder:
        def __init__(self):
            self.ticks = []

        def tick(self, posts):
            self.ticks.append(posts)

    recorder = Recorder()
    checkpoints = {name: resolve(name, tiny_checkpoints[name]) for name in ("sentiment", "emotion")}
    handler = ClassifiersHandler(checkpoints, {"sentiment": None, "emotion": None},
                                 InferenceOptions(device="cpu", cpu_backend="torch", max_items_per_batch=4), progress=recorder)
    model = handler.load_model()
    sentiment = model.classifiers["sentiment"]
    texts = TEXTS[:30]
    clean_ids = {i for ids in sentiment.tokenizer(texts)["input_ids"] for i in ids}
    poison_ids = set(sentiment.tokenizer(POISON, add_special_tokens=False)["input_ids"]) - clean_ids
    texts[3] = f"a {POISON} post"

    def forward(loaded, arrays):
        if poison_ids & set(arrays["input_ids"].ravel().tolist()):
            raise ValueError("boom")
        return run_forward(loaded, arrays)

    model.classifiers["sentiment"] = replace(sentiment, forward=forward)
    batch = [{"id": str(i), "text": t, "clean_text": t, "lang": "en"} for i, t in enumerate(texts)]
    batch += [{"id": "empty", "text": "", "clean_text": "", "lang": "und"}]
    (result,) = handler.run_inference(batch, model)
    assert len(result.failed) == 1 and len(result.rows) + len(result.failed) == len(batch)
    assert len(recorder.ticks) >= 2 * 30 // 4  # each classifier's sub-batches of at most 4 texts
    assert max(recorder.ticks[:-1]) <= 4 * len(batch) / 60 + 1e-9
    assert sum(recorder.ticks) == pytest.approx(len(batch), abs=1e-9)


def test_progress_lines_run_on_the_launch_clock_and_keep_runs_apart(monkeypatch, caplog):
    import logging
    import time

    from pipelines import beam_steps

    now = [1000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    first = beam_steps.ProgressFn(expected=100, every=10.0, started=990.0)
    with caplog.at_level(logging.INFO, logger="pipelines.beam_steps"):
        first.tick(2.5)  # a first tick: no line, the step has no pace yet (the launch clock's would mislead)
        now[0] = 1005.0
        first.tick(2.5)  # 15 s after the launch: a line
        now[0] = 1011.0
        first.tick(5.0)  # 6 s after that line: none
        other = beam_steps.ProgressFn(expected=100, every=10.0, started=1001.0)  # another run: its own count
        other.tick(1)
        now[0] = 1012.0
        other.tick(1)
    lines = [r.getMessage() for r in caplog.records]
    # seconds on the launch clock; the pace from the step's first tick (2.5 more posts in the 5 s
    # after it); no time left while that pace covers under 20 s (console.time_left)
    assert lines == ["5 posts labeled in 15 s (0.5 posts/s since labeling began)",
                     "2 posts labeled in 11 s (1.0 posts/s since labeling began)"]
    now[0] = 1031.0
    with caplog.at_level(logging.INFO, logger="pipelines.beam_steps"):
        first.tick(10)  # 31 s of pace now: the time left, from 17.5 posts in those 31 s
    assert caplog.records[-1].getMessage() == (
        "20 posts labeled in 41 s (0.6 posts/s since labeling began), about 142 s left of ~100")
