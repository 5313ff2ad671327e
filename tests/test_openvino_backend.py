"""OpenVINO as the CPU backend (models/openvino_backend.py): its forward pass against a plain
transformers one, its cache of converted models (two processes at once, a retrained checkpoint, a
cache that cannot be written), the int8 model built offline and the refusal of an int8 run
without it, and what the manifest, the Parquet metadata and --skip-if-done make of the backend."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from models import openvino_backend
from models.checkpoints import load_weights, resolve
from models.classifier import InferenceOptions, load_classifier
from pipelines.label_corpus import main
from tests.test_throughput_correctness import TEXTS
from transforms import reuse

FP32_BOUND = 1e-4  # OpenVINO fp32 against torch fp32 (measured: 6e-8 on these models)
BF16_LOGIT_BOUND = 5e-2  # logits; OpenVINO bf16 against torch fp32 on these tiny models
INT8_BOUND = 5e-2


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def load(path: str, name: str, backend: str, precision: str = "fp32"):
    return load_classifier(resolve(name, path), InferenceOptions(device="cpu", cpu_backend=backend,
                                                                 cpu_precision=precision, cpu_threads=1))


def reference_logits(path: str, texts) -> np.ndarray:
    """A plain transformers forward pass, one text at a time, unpadded."""
    from transformers import AutoTokenizer

    model, tokenizer = load_weights(path), AutoTokenizer.from_pretrained(path)
    limit = min(tokenizer.model_max_length, 510)
    with torch.inference_mode():
        return np.stack([model(**tokenizer(t, truncation=True, max_length=limit, return_tensors="pt")).logits[0].numpy()
                         for t in texts])


def labels_of(loaded, logits) -> list:
    return [{k: v for k, v in row.items() if not isinstance(v, float)} for row in loaded.head.to_columns(logits)]


@pytest.mark.parametrize("name", ["politics", "stars", "sentiment", "emotion"])
def test_openvino_scores_and_labels_match_torch_fp32(tiny_checkpoints, name):
    """fp32 matches a plain transformers forward pass to float rounding and bf16 within its bound,
    through the handler's own batching (sorted, padded sub-batches of varying shape); fp32's labels
    are torch's on every text, bf16's on every text whose decision is not within its drift of a tie."""
    path = tiny_checkpoints[name]
    texts = TEXTS[:60]
    reference = reference_logits(path, texts)
    fp32 = load(path, name, "openvino", "fp32")
    fp32.max_items = 7  # several sub-batches of different shapes
    logits, failures, stats = fp32.logits(texts)
    assert not failures and stats["sub_batches"] > 3
    np.testing.assert_allclose(logits, reference, atol=FP32_BOUND, rtol=0)
    assert labels_of(fp32, logits) == labels_of(fp32, reference)
    bf16 = load(path, name, "openvino", "bf16")
    bf16_logits, _, _ = bf16.logits(texts)
    drift = np.abs(bf16_logits - reference).max()
    assert 0 < drift <= BF16_LOGIT_BOUND  # it did run in bf16, and only moved the logits that much
    # the texts whose labels no move of the logits within twice that drift changes
    rng = np.random.default_rng(0)
    expected = labels_of(bf16, reference)
    moved = [labels_of(bf16, reference + rng.uniform(-2 * drift, 2 * drift, reference.shape)) for _ in range(20)]
    clear = [i for i in range(len(texts)) if all(m[i] == expected[i] for m in moved)]
    assert len(clear) >= 0.8 * len(texts)
    got = labels_of(bf16, bf16_logits)
    assert [got[i] for i in clear] == [expected[i] for i in clear]


def copy_checkpoint(tiny_checkpoints, name: str, target: Path) -> str:
    shutil.copytree(tiny_checkpoints[name], target, ignore=shutil.ignore_patterns(openvino_backend.CACHE_DIR))
    return str(target)


CONVERT = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from models import openvino_backend
    from models.checkpoints import load_weights, resolve
    path, go = sys.argv[1], Path(sys.argv[2])
    checkpoint = resolve("sentiment", path)
    entry = openvino_backend.cache_entry(path, checkpoint.revision, "fp32")
    while not go.exists():  # both processes start converting at the same moment
        time.sleep(0.01)
    ir, converted = openvino_backend.cached_ir(entry, lambda: openvino_backend.convert(load_weights(path)))
    print(json.dumps({"ir": str(ir), "converted": converted}))
""")


def test_two_processes_converting_at_once_convert_once_into_one_place(tiny_checkpoints, tmp_path):
    path = copy_checkpoint(tiny_checkpoints, "sentiment", tmp_path / "sentiment")
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                                        os.environ.get("PYTHONPATH", "")])}
    children = [subprocess.Popen([sys.executable, "-c", CONVERT, path, str(go)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    go.touch()
    results = []
    for child in children:
        out, err = child.communicate(timeout=240)
        assert child.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["converted"] for r in results) == [False, True]  # one converted, the other waited and read it
    assert results[0]["ir"] == results[1]["ir"]
    cache = Path(path) / openvino_backend.CACHE_DIR
    assert [p.name for p in cache.iterdir() if p.is_dir()] == [Path(results[0]["ir"]).parent.name]  # no temp dirs left
    loaded = load(path, "sentiment", "openvino")
    assert loaded.model.source == results[0]["ir"]  # the job reads that cache, it does not convert again
    np.testing.assert_allclose(loaded.logits(TEXTS[:20])[0], reference_logits(path, TEXTS[:20]), atol=FP32_BOUND,
                               rtol=0)


def test_a_retrained_checkpoint_is_converted_again_and_its_old_model_dropped(tiny_checkpoints, tmp_path):
    path = copy_checkpoint(tiny_checkpoints, "emotion", tmp_path / "emotion")
    before = load(path, "emotion", "openvino")
    old_entry = Path(before.model.source).parent
    model = load_weights(path)  # "retrain": new weights in the same directory
    with torch.no_grad():
        for parameter in model.classifier.parameters():
            parameter.add_(torch.randn_like(parameter))
    model.save_pretrained(path)
    after = load(path, "emotion", "openvino")
    assert Path(after.model.source).parent != old_entry and not old_entry.exists()
    new_reference = reference_logits(path, TEXTS[:20])
    assert np.abs(before.logits(TEXTS[:20])[0] - new_reference).max() > 0.1  # the old model would be stale
    np.testing.assert_allclose(after.logits(TEXTS[:20])[0], new_reference, atol=FP32_BOUND, rtol=0)


def test_an_unwritable_cache_converts_in_memory_with_a_warning(tiny_checkpoints, tmp_path, caplog):
    path = copy_checkpoint(tiny_checkpoints, "stars", tmp_path / "stars")
    (Path(path) / openvino_backend.CACHE_DIR).write_text("not a directory")  # as a read-only image would refuse it
    with caplog.at_level(logging.WARNING, logger="models.openvino_backend"):
        loaded = load(path, "stars", "openvino")
    assert "cannot be written" in caplog.text and "converting in memory" in caplog.text
    np.testing.assert_allclose(loaded.logits(TEXTS[:20])[0], reference_logits(path, TEXTS[:20]), atol=FP32_BOUND,
                               rtol=0)


def test_int8_without_its_model_is_refused_at_launch_and_runs_once_exported(tiny_checkpoints, tmp_path, capsys):
    path = copy_checkpoint(tiny_checkpoints, "sentiment", tmp_path / "sentiment")
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(TEXTS[:40])))
    argv = ["--input", str(posts), "--output", str(tmp_path / "out"), "--model", f"sentiment={path}",
            "--only", "sentiment", "--device", "cpu", "--cpu-precision", "int8", "--cpu-threads", "1"]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"python -m models.export --checkpoint {path} --calibration" in error
    assert not (tmp_path / "out").exists()  # refused before anything was read or written

    from models.export import main as export

    assert export(["--checkpoint", path, "--calibration", str(posts), "--samples", "30"]) == 0
    assert main(argv) == 0
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["inference"] == {"backend": "openvino", "precision": "int8"}
    table = pq.read_table(next((tmp_path / "out").glob("labels-*.parquet")))
    metadata = table.schema.metadata
    assert metadata[b"label_corpus.backend"] == b"openvino" and metadata[b"label_corpus.precision"] == b"int8"
    scores = dict(zip(table["id"].to_pylist(), table["sentiment_score"].to_pylist()))
    reference = reference_logits(path, TEXTS[:40])
    reference_p = np.exp(reference) / np.exp(reference).sum(-1, keepdims=True)
    labeled = [i for i in range(40) if scores[str(i)] is not None]  # the others are not English
    assert len(labeled) > 30
    assert np.abs(np.array([scores[str(i)] for i in labeled]) - reference_p[labeled].max(-1)).max() <= INT8_BOUND


def test_a_change_of_backend_or_precision_reruns_every_classifier_under_skip_if_done():
    options = {"fields": {}}
    inputs = {"files": []}
    committed = {"run_id": "r1", "row_options": options, "inputs": inputs, "routing": {"sentiment": "en"},
                 "checkpoints": {"sentiment": {"revision": "sha256:a"}},
                 "inference": {"backend": "openvino", "precision": "bf16"}}
    same = {"sentiment": reuse.classifier_identity("sha256:a", "en", {"backend": "openvino", "precision": "bf16"})}
    assert reuse.plan(committed, same, options, inputs).nothing_to_do
    torch_fp32 = {"sentiment": reuse.classifier_identity("sha256:a", "en", {"backend": "torch", "precision": "fp32"})}
    plan = reuse.plan(committed, torch_fp32, options, inputs)
    assert plan.rerun == ("sentiment",) and "torch fp32 instead of openvino bf16" in plan.reason
    # a partition committed before runs named their backend ran torch fp32, the default then
    older = {key: value for key, value in committed.items() if key != "inference"}
    assert reuse.plan(older, torch_fp32, options, inputs).nothing_to_do
    assert reuse.plan(older, same, options, inputs).rerun == ("sentiment",)


@pytest.mark.parametrize("old, new", [(["--cpu-dtype", "bf16"], "--cpu-backend torch --cpu-precision bf16"),
                                      (["--quantize-int8"], "--cpu-backend torch --cpu-precision int8")])
def test_the_old_cpu_flags_are_refused_with_their_new_spelling(tmp_path, capsys, old, new):
    assert main(["--input", str(tmp_path / "x.jsonl"), "--output", str(tmp_path / "out"), *old]) == 2
    assert new in capsys.readouterr().err
