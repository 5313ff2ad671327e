"""Adding a classifier takes no code: `--model toxicity=CHECKPOINT` names a fifth, generic one,
defined by its checkpoint alone. This test labels a corpus with all five (toxicity routed to English
by --languages), comparing its scores with a plain transformers forward pass and checking the
manifest's counts for it."""
from __future__ import annotations

import glob
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipelines.label_corpus import run
from transforms.cleaning import clean_text

POSTS = [{"id": "en0", "text": "the government should spend more money on schools", "lang": "en"},
         {"id": "en1", "text": "what a terrible awful day @user http://t.co/x", "lang": "en"},
         {"id": "zh0", "text": "酒店房间很干净，服务也很周到", "lang": "zh"},
         {"id": "empty", "text": "", "lang": "en"}]


@pytest.fixture
def toxicity_checkpoint(tmp_path, tiny_checkpoints):
    path = tmp_path / "toxicity"
    shutil.copytree(tiny_checkpoints["sentiment"], path)
    config = json.loads((path / "config.json").read_text())
    config.update(id2label={"0": "calm", "1": "toxic"}, label2id={"calm": 0, "toxic": 1})
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


def test_a_fifth_classifier_is_labeled_end_to_end(tmp_path, tiny_models_file, toxicity_checkpoint):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = tmp_path / "posts.jsonl"
    source.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in POSTS), encoding="utf-8")
    out = tmp_path / "out"
    run(["--input", str(source), "--output", str(out), "--models", tiny_models_file, "--model",
         f"toxicity={toxicity_checkpoint}", "--languages", "toxicity=en", "--lang-field", "lang", "--device", "cpu",
         "--cpu-backend", "torch"])
    table = pa.concat_tables([pq.read_table(f) for f in sorted(glob.glob(str(out / "labels-*.parquet")))])
    rows = {row["id"]: row for row in table.to_pylist()}
    assert {"toxicity", "toxicity_score", "sentiment", "stars", "emotions"} <= set(table.column_names)
    assert rows["zh0"]["toxicity"] is None and rows["empty"]["toxicity"] is None  # routing and empty texts
    assert rows["zh0"]["stars"] is not None  # the four others still run

    tokenizer = AutoTokenizer.from_pretrained(toxicity_checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(toxicity_checkpoint).eval()
    texts = [clean_text(POSTS[i]["text"]) for i in (0, 1)]
    ran = 0
    for row_id, text in zip(("en0", "en1"), texts):
        encoded = tokenizer(text, return_tensors="pt")
        ran += encoded["input_ids"].shape[1]
        with torch.inference_mode():
            probs = torch.softmax(model(**encoded).logits[0], -1).numpy()
        assert rows[row_id]["toxicity"] == ("calm", "toxic")[int(probs.argmax())]
        assert rows[row_id]["toxicity_score"] == pytest.approx(float(probs.max()), abs=1e-5)

    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["inferences"]["toxicity"] == 2 and manifest["tokens"]["toxicity"] == ran  # en0, en1
    assert manifest["by_classifier"]["toxicity"] == {"labeled": 2, "skipped_language": 1}  # zh0; empty: neither
    assert manifest["checkpoints"]["toxicity"]["checkpoint"] == toxicity_checkpoint
