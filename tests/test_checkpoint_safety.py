"""Checkpoint validation proves the checkpoint works, and runs none of its code, before any data
is read: transformers' config semantics, trust_remote_code=False, weights_only, a probe forward."""
from __future__ import annotations

import io
import json
import shutil
import sys

import pytest

from models.checkpoints import CheckpointError, resolve, validate


def _copy(tiny_checkpoints, tmp_path, name="sentiment"):
    target = tmp_path / name
    shutil.copytree(tiny_checkpoints[name], target)
    return target


def test_a_transformers_5_distilbert_with_the_default_two_labels_is_accepted(tiny_checkpoints, tmp_path):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    target = _copy(tiny_checkpoints, tmp_path)
    (target / "model.safetensors").unlink()
    config = DistilBertConfig(vocab_size=json.loads((target / "config.json").read_text())["vocab_size"],
                              dim=32, hidden_dim=64, n_layers=1, n_heads=2, max_position_embeddings=64)
    DistilBertForSequenceClassification(config).save_pretrained(target)  # as transformers 5 saves it
    assert "id2label" not in json.loads((target / "config.json").read_text())
    head = validate(resolve("sentiment", str(target)))
    assert [f.name for f in head.fields] == ["sentiment", "sentiment_score"]


EVIL = """
import pathlib
pathlib.Path({marker!r}).write_text("ran")
from transformers import PretrainedConfig
class EvilConfig(PretrainedConfig):
    model_type = "evil_model"
"""


def test_a_checkpoint_that_needs_its_own_code_is_refused_even_when_stdin_says_yes(tiny_checkpoints, tmp_path,
                                                                                  monkeypatch):
    target = _copy(tiny_checkpoints, tmp_path)
    marker = tmp_path / "code-ran"
    (target / "evil.py").write_text(EVIL.format(marker=str(marker)))
    config = json.loads((target / "config.json").read_text())
    config.update(model_type="evil_model", auto_map={"AutoConfig": "evil.EvilConfig",
                                                      "AutoModelForSequenceClassification": "evil.EvilModel"})
    (target / "config.json").write_text(json.dumps(config))
    tokenizer_config = json.loads((target / "tokenizer_config.json").read_text())
    tokenizer_config["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
    (target / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n" * 10))
    with pytest.raises(CheckpointError, match=r"classifier 'sentiment': checkpoint .* is refused"):
        validate(resolve("sentiment", str(target)))
    assert not marker.exists()


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_a_malicious_pickle_is_refused_at_validation_without_running(tiny_checkpoints, tmp_path):
    import torch

    target = _copy(tiny_checkpoints, tmp_path)
    (target / "model.safetensors").unlink()
    marker = tmp_path / "pickle-ran"
    torch.save({"weight": torch.zeros(1), "payload": _RunsCode(str(marker))}, target / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"'sentiment'.*pytorch_model\.bin.*weights_only"):
        validate(resolve("sentiment", str(target)))
    assert not marker.exists()


def test_a_tokenizer_without_its_unknown_token_fails_validation_naming_classifier_and_checkpoint(
        tiny_checkpoints, tmp_path):
    target = _copy(tiny_checkpoints, tmp_path)
    tokenizer = json.loads((target / "tokenizer.json").read_text())
    unk = tokenizer["model"]["unk_token"]
    del tokenizer["model"]["vocab"][unk]
    tokenizer["added_tokens"] = [t for t in tokenizer["added_tokens"] if t["content"] != unk]
    (target / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(CheckpointError, match=rf"classifier 'sentiment': checkpoint '{target}' is refused: "
                                              r"a probe text fails in its tokenizer"):
        validate(resolve("sentiment", str(target)))


def test_a_head_that_does_not_fit_the_weights_fails_the_probe(tiny_checkpoints, tmp_path):
    target = _copy(tiny_checkpoints, tmp_path, "emotion")
    config = json.loads((target / "config.json").read_text())
    config["id2label"] = {str(i): f"feeling_{i}" for i in range(len(config["id2label"]) + 1)}
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    config.pop("thresholds", None)
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"classifier 'emotion'.*refused"):
        validate(resolve("emotion", str(target)))
