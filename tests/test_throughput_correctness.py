"""What the speed work touches must not change the labels: scores are the same with and without
length sorting, for any RunInference batch size and token budget; results come back in input
order; a very long post does not change its short neighbours' scores; bf16 and int8 (torch's,
and OpenVINO's bf16: tests/test_openvino_backend.py has the rest of OpenVINO) stay within their bounds; Beam's length-bucketed batching labels the same rows.

References are independent of the handler's batching: one text at a time, unpadded, through a
plain transformers forward pass.
"""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.checkpoints import resolve
from models.classifier import InferenceOptions, LoadedClassifier, load_classifier
from models.batch_labeling import LabeledBatch, LoadedClassifiers
from pipelines.beam_steps import ClassifiersHandler
from models.runtime import autocast_dtype_for
from pipelines.label_corpus import run
from tests.test_pipeline import read_labels

# Bounds for the reduced-precision options on these tiny random models; the benchmark reports
# the measured differences at real shapes (benchmarks/README.md).
BF16_BOUND = 0.02
INT8_BOUND = 0.05
FP32_BOUND = 1e-4


def corpus(n: int, seed: int = 3) -> list[str]:
    """Short posts with a long tail, as in social media: 2 to ~3,000 characters."""
    rng = random.Random(seed)
    words = "the vote economy happy sad great @user love hate delivery slow 酒店 很好 rakyat !!".split()
    texts = []
    for _ in range(n):
        target = min(3000, int(rng.lognormvariate(4.0, 0.9)) + 2)
        text = ""
        while len(text) < target:
            text += rng.choice(words) + " "
        texts.append(text[:target].strip() or "a")
    return texts


TEXTS = corpus(90)
LONG_POST = ("the economy and the vote " * 130)[:3000]


def load_for(checkpoints, name="emotion", **options) -> LoadedClassifier:
    options.setdefault("cpu_threads", 1)  # tiny models gain nothing from more, and the CPU may be shared
    options.setdefault("cpu_backend", "torch")  # the fp32 reference these tests compare with
    return load_classifier(resolve(name, checkpoints[name]), InferenceOptions(device="cpu", **options))


@pytest.fixture(scope="module", autouse=True)
def restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def loaded(tiny_checkpoints):
    """name -> loaded classifier in fp32, loaded once."""
    return {name: load_for(tiny_checkpoints, name) for name in ("emotion", "politics")}


@pytest.fixture(scope="module")
def reference(loaded):
    """name -> logits of TEXTS (+ LONG_POST last), one text at a time without padding."""
    out = {}
    for name, model in loaded.items():
        rows = []
        with torch.inference_mode():
            for text in TEXTS + [LONG_POST]:
                encoded = model.tokenizer(text, truncation=True, max_length=model.max_length, return_tensors="pt")
                rows.append(model.model(**encoded).logits[0].numpy())
        out[name] = np.stack(rows)
    return out


def labelled(model, texts, batch_size):
    """Logits through the handler's own batching, with RunInference-style batches of batch_size."""
    rows = []
    for start in range(0, len(texts), batch_size):
        logits, failures, _ = model.logits(texts[start:start + batch_size])
        assert not failures
        rows.append(logits)
    return np.concatenate(rows)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch_size=st.integers(1, 90), max_tokens=st.integers(1, 3000), max_items=st.integers(1, 64),
       sort=st.booleans(), name=st.sampled_from(["emotion", "politics"]))
def test_scores_do_not_depend_on_sorting_batch_size_or_budget(loaded, reference, batch_size, max_tokens, max_items,
                                                              sort, name):
    model = loaded[name]
    model.max_tokens, model.max_items, model.sort_by_length = max_tokens, max_items, sort
    try:
        logits = labelled(model, TEXTS, batch_size)
    finally:
        model.max_tokens, model.max_items, model.sort_by_length = 8192, 256, True
    np.testing.assert_allclose(logits, reference[name][: len(TEXTS)], atol=FP32_BOUND, rtol=0)


def test_columns_come_back_in_input_order_and_empty_or_unrouted_texts_stay_null(tiny_checkpoints, loaded, reference):
    handler = ClassifiersHandler({name: resolve(name, tiny_checkpoints[name]) for name in loaded},
                                 {"emotion": frozenset({"en"}), "politics": None}, InferenceOptions(device="cpu", cpu_backend="torch"))
    texts = [None, TEXTS[5], "", TEXTS[0], LONG_POST, TEXTS[1], TEXTS[2]]
    langs = ["en", "en", "en", "en", "en", "und", "zh"]
    batch = [{"id": str(i), "clean_text": t, "lang": lang} for i, (t, lang) in enumerate(zip(texts, langs))]
    [counts] = handler.run_inference(batch, LoadedClassifiers(loaded))  # one result for the whole batch
    rows = counts.rows
    assert isinstance(counts, LabeledBatch) and not counts.failed
    assert [row["id"] for row in rows] == [str(i) for i in range(len(texts))]
    assert not any(key.startswith(("emotion", "politics")) for i in (0, 2) for key in rows[i])
    assert not any(key.startswith("emotion") for key in rows[6]) and "politics_economy" in rows[6]  # zh: no emotion
    expected = {name: reference[name][[5, 0, len(TEXTS), 1]] for name in loaded}
    probabilities = 1 / (1 + np.exp(-expected["emotion"]))
    for row, p in zip([rows[i] for i in (1, 3, 4, 5)], probabilities):
        assert row["emotion_anger"] == pytest.approx(float(p[0]), abs=FP32_BOUND)
        assert row["emotion_gratitude"] == pytest.approx(float(p[-1]), abs=FP32_BOUND)
    politics = loaded["politics"].head.to_columns(expected["politics"])
    for row, columns in zip([rows[i] for i in (1, 3, 4, 5)], politics):
        assert row["politics_economy_score"] == pytest.approx(columns["politics_economy_score"], abs=FP32_BOUND)
    # The counts the manifest sums: the texts each model ran on and their tokens, and the rows it
    # labeled or was kept from (rows 0 and 2 have no text; row 6 is zh, outside emotion's languages).
    assert counts.inferences == counts.labeled == {"emotion": 4, "politics": 5}
    assert counts.skipped_language == {"emotion": 1, "politics": 0}
    for name, model in loaded.items():
        ran = [texts[i] for i in ((1, 3, 4, 5) if name == "emotion" else (1, 3, 4, 5, 6))]
        ids = model.tokenizer(ran, truncation=True, max_length=model.max_length)["input_ids"]
        assert counts.tokens[name] == sum(len(x) for x in ids)


@pytest.mark.parametrize("sort", [True, False])
def test_a_3000_character_post_does_not_change_the_short_ones(loaded, sort):
    model = loaded["politics"]
    short = [t for t in TEXTS if len(t) < 60][:30]
    model.sort_by_length, model.max_tokens = sort, 100_000  # a budget that would let them all ride together
    try:
        alone, _, _ = model.logits(short)
        mixed, failures, stats = model.logits(short[:15] + [LONG_POST] + short[15:])
    finally:
        model.sort_by_length, model.max_tokens = True, 8192
    assert not failures
    without_long = np.concatenate([mixed[:15], mixed[16:]])
    np.testing.assert_allclose(without_long, alone, atol=FP32_BOUND, rtol=0)
    long_tokens = len(model.tokenizer(LONG_POST, truncation=True, max_length=model.max_length)["input_ids"])
    if sort:  # the long post gets a pass of its own: the short ones are not padded to it
        assert stats["padded_tokens"] < long_tokens + 31 * 40
    else:  # in arrival order they are, and the scores still agree
        assert stats["padded_tokens"] >= 31 * long_tokens


@pytest.mark.parametrize("option, bound", [({"cpu_precision": "bf16"}, BF16_BOUND), ({"cpu_precision": "int8"}, INT8_BOUND),
                                           ({"cpu_backend": "openvino", "cpu_precision": "bf16"}, BF16_BOUND)])
def test_reduced_precision_stays_within_its_bound_sorted_or_not(tiny_checkpoints, reference, option, bound):
    model = load_for(tiny_checkpoints, "emotion", **option)
    sorted_logits, _, _ = model.logits(TEXTS)
    model.sort_by_length = False
    unsorted_logits, _, _ = model.logits(TEXTS)
    fp32 = 1 / (1 + np.exp(-reference["emotion"][: len(TEXTS)]))
    for logits in (sorted_logits, unsorted_logits):
        probabilities = 1 / (1 + np.exp(-logits))
        difference = np.abs(probabilities - fp32).max()
        assert 0 < difference <= bound  # it did change the arithmetic, and only that much
    assert np.abs(1 / (1 + np.exp(-sorted_logits)) - 1 / (1 + np.exp(-unsorted_logits))).max() <= bound


def test_option_checks_and_dtype_choice(tiny_checkpoints, monkeypatch):
    with pytest.raises(ValueError, match="cpu_precision"):
        load_for(tiny_checkpoints, cpu_precision="fp16")
    with pytest.raises(ValueError, match="cpu_backend"):
        load_for(tiny_checkpoints, cpu_backend="onnx")
    assert autocast_dtype_for("cpu") is None
    assert autocast_dtype_for("cpu", "bf16") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast_dtype_for("cuda") is torch.float16  # e.g. a T4 or V100
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype_for("cuda") is torch.bfloat16
    model = load_for(tiny_checkpoints, cpu_threads=3)
    assert model.staging is None and torch.get_num_threads() == 3  # pinned buffers are for CUDA only
    load_for(tiny_checkpoints)
    assert torch.get_num_threads() == 1


def test_pipeline_with_length_buckets_and_without_sorting_labels_the_same_rows(tmp_path, tiny_checkpoints):
    texts = corpus(60, seed=11) + [LONG_POST]
    with open(tmp_path / "p.jsonl", "w", encoding="utf-8") as handle:
        for i, text in enumerate(texts):
            handle.write(json.dumps({"id": f"r{i}", "text": text}, ensure_ascii=False) + "\n")
    outputs = {}
    for label, extra in {"default": [], "buckets": ["--length-buckets", "40,120"], "unsorted": ["--no-sort"]}.items():
        run(["--input", str(tmp_path / "p.jsonl"), "--output", str(tmp_path / label), "--only", "sentiment",
             "--model", f"sentiment={tiny_checkpoints['sentiment']}", "--device", "cpu", "--batch-size", "16",
             "--cpu-backend", "torch", *extra])
        outputs[label] = {r["id"]: r for r in read_labels(tmp_path / label).to_pylist()}
    assert len(outputs["default"]) == len(texts)
    for label in ("buckets", "unsorted"):
        assert outputs[label].keys() == outputs["default"].keys()
        for row_id, row in outputs["default"].items():
            assert outputs[label][row_id]["sentiment"] == row["sentiment"]
            assert outputs[label][row_id]["sentiment_score"] == pytest.approx(row["sentiment_score"], abs=FP32_BOUND)


def test_the_classifiers_shared_across_processes_label_through_beams_proxy(tiny_checkpoints):
    """What large_model=True (on CUDA) turns on: RunInference loads the classifiers in one shared
    process (MultiProcessShared) and run_inference calls classify_all through a proxy; forced here on
    CPU, the rows come back labeled by all four classifiers."""
    import apache_beam as beam
    from apache_beam.testing.util import assert_that

    from pipelines.beam_steps import Classify
    from pipelines.runner import make_pipeline

    handler = ClassifiersHandler({name: resolve(name, path) for name, path in tiny_checkpoints.items()},
                                 {name: None for name in tiny_checkpoints}, InferenceOptions(device="cpu", batch_size=8))
    assert not handler.share_model_across_processes()  # on CPU each process loads its own
    handler._share_across_processes = handler._large_model = True  # as ModelHandler.__init__(large_model=True) sets
    rows = [{"id": str(i), "text": TEXTS[i], "clean_text": TEXTS[i], "lang": "en"} for i in range(20)]

    def check(batches):
        labeled = [row for batch in batches for row in batch]
        assert sorted(row["id"] for row in labeled) == sorted(str(i) for i in range(20))
        assert all(row["sentiment"] in ("negative", "positive") and row["stars"] in range(1, 6)
                   and isinstance(row["emotions"], list) and row["politics_economy"] for row in labeled)

    with make_pipeline([]) as pipeline:
        labeled = pipeline | beam.Create(rows) | Classify(handler)
        assert_that(labeled.rows, check)


def test_the_benchmark_cuts_texts_where_the_pipeline_does(tiny_checkpoints):
    """benchmarks/throughput.py tokenizes (stage times, token profile) and cleans at the pipeline's
    limits, taken from models.runtime: a BERT checkpoint with 512 positions is cut at 512 tokens,
    where the benchmark once cut at 510, and a RoBERTa one at its positions less the padding offset."""
    from benchmarks.throughput import pipeline_cuts
    from models.checkpoints import load_config_dict

    clean_limit, limits = pipeline_cuts(tiny_checkpoints)
    configs = {name: load_config_dict(path) for name, path in tiny_checkpoints.items()}
    bert = [name for name, config in configs.items() if config["model_type"] == "bert"]
    assert bert, "the tiny checkpoints have a BERT-like one"
    for name, path in tiny_checkpoints.items():
        loaded = load_classifier(resolve(name, path), InferenceOptions(device="cpu", cpu_backend="torch"))
        assert limits[name] == loaded.max_length, name  # what the pipeline's classifier truncates to
        text = " ".join(f"w{i}" for i in range(2000))  # far more tokens than any limit
        assert len(loaded.tokenizer([text], truncation=True, max_length=limits[name])["input_ids"][0]) == limits[name]
    for name in bert:
        assert limits[name] == configs[name]["max_position_embeddings"] == 512
    assert clean_limit >= max(limits.values())  # each text is cleaned for as many tokens as any model takes
