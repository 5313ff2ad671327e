"""Random-weight checkpoints at the four classifiers' architecture shapes, built offline.

Speed does not depend on the weights, so the benchmark builds its own: the real shapes
(bert-base-uncased, bert-base-chinese with its 21,128-token vocabulary, distilbert-base-uncased,
roberta-large) or shrunk ones (`small`) for quick runs. Tokenizers are trained on the fly on the
benchmark's texts, so that token counts per post are realistic, and the configs carry the real
vocabulary sizes. The checkpoints are cached by shape under a cache directory; every contender
of a benchmark run loads the same directories.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from models.classifiers import PUBLISHED as SPECS
from models.tiny_checkpoints import byte_bpe_tokenizer, label_fields, wordpiece_tokenizer


@dataclass(frozen=True)
class Shape:
    arch: str  # bert, distilbert, roberta
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    lowercase: bool = True


SHAPES: dict[str, dict[str, Shape]] = {
    "real": {
        "politics": Shape("bert", 768, 12, 12, 3072, 30522),
        "stars": Shape("bert", 768, 12, 12, 3072, 21128, lowercase=False),
        "sentiment": Shape("distilbert", 768, 6, 12, 3072, 30522),
        "emotion": Shape("roberta", 1024, 24, 16, 4096, 50265),
    },
    # Shrunk for quick runs: same families and vocabularies, smaller widths and depths
    # (the relative costs stay: roberta-large the heaviest, distilbert the lightest).
    "small": {
        "politics": Shape("bert", 256, 4, 4, 1024, 30522),
        "stars": Shape("bert", 256, 4, 4, 1024, 21128, lowercase=False),
        "sentiment": Shape("distilbert", 256, 3, 4, 1024, 30522),
        "emotion": Shape("roberta", 384, 6, 6, 1536, 50265),
    },
    # Toy widths for smoke runs and memory checks, where the models should cost next to nothing.
    "tiny": {
        "politics": Shape("bert", 32, 2, 2, 64, 30522),
        "stars": Shape("bert", 32, 2, 2, 64, 21128, lowercase=False),
        "sentiment": Shape("distilbert", 32, 2, 2, 64, 30522),
        "emotion": Shape("roberta", 32, 2, 2, 64, 50265),
    },
}


def linear_flops_per_token(shape: Shape) -> int:
    """Multiply-add FLOPs (2 per MAC) of the encoder's dense layers for one token."""
    per_layer = 4 * shape.hidden * shape.hidden + 2 * shape.hidden * shape.ffn
    return 2 * shape.layers * per_layer


def useful_flops(shape: Shape, lengths: Sequence[int], num_labels: int) -> float:
    """FLOPs of an unpadded forward pass over texts of these token lengths: dense layers per
    token, attention scores and weighted sums per token pair, the classification head per text."""
    linear = linear_flops_per_token(shape)
    attention = 2 * 2 * shape.hidden * shape.layers  # QK^T and AV per (query, key) pair
    head = 2 * (shape.hidden * shape.hidden + shape.hidden * num_labels)
    total = 0.0
    for n in lengths:
        total += n * linear + n * n * attention + head
    return total


def _training_texts(texts: Sequence[str], limit: int = 50_000) -> list[str]:
    from models.tiny_checkpoints import training_corpus

    return list(texts[:limit]) + training_corpus()


def _wordpiece(texts: list[str], vocab: int, lowercase: bool):
    return wordpiece_tokenizer(lowercase=lowercase, vocab_size=vocab, texts=texts, min_frequency=2)


def _byte_bpe(texts: list[str], vocab: int):
    return byte_bpe_tokenizer(vocab_size=vocab, texts=texts, min_frequency=2)


def build_checkpoint(name: str, shape: Shape, texts: Sequence[str], target: Path, seed: int = 0) -> Path:
    import torch
    from transformers import (AutoModelForSequenceClassification, BertConfig, DistilBertConfig,
                              RobertaConfig)

    torch.manual_seed(seed)
    common = label_fields(name)
    training = _training_texts(texts)
    if shape.arch == "roberta":
        tokenizer = _byte_bpe(training, shape.vocab)
        config = RobertaConfig(vocab_size=max(shape.vocab, len(tokenizer)), hidden_size=shape.hidden,
                               num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                               intermediate_size=shape.ffn, max_position_embeddings=514,
                               pad_token_id=tokenizer.pad_token_id, bos_token_id=0, eos_token_id=2,
                               type_vocab_size=1, **common)
    elif shape.arch == "distilbert":
        tokenizer = _wordpiece(training, shape.vocab, shape.lowercase)
        config = DistilBertConfig(vocab_size=max(shape.vocab, len(tokenizer)), dim=shape.hidden,
                                  n_layers=shape.layers, n_heads=shape.heads, hidden_dim=shape.ffn,
                                  max_position_embeddings=512, **common)
    else:
        tokenizer = _wordpiece(training, shape.vocab, shape.lowercase)
        config = BertConfig(vocab_size=max(shape.vocab, len(tokenizer)), hidden_size=shape.hidden,
                            num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                            intermediate_size=shape.ffn, max_position_embeddings=512, **common)
    model = AutoModelForSequenceClassification.from_config(config)
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    os.replace(partial, target)
    return target


def default_cache() -> Path:
    return Path(os.environ.get("LABEL_CORPUS_BENCH_CACHE", Path.home() / ".cache" / "label_corpus_bench"))


def build_all(scale: str, texts: Sequence[str], cache: Path | None = None) -> dict[str, str]:
    """classifier name -> checkpoint directory at this scale; built once per (scale, shape, texts)."""
    cache = Path(cache or default_cache())
    digest = hashlib.sha256()
    digest.update(json.dumps({n: asdict(s) for n, s in SHAPES[scale].items()}, sort_keys=True).encode())
    for text in texts[:50_000]:
        digest.update(text.encode("utf-8", "replace") + b"\0")
    root = cache / f"{scale}-{digest.hexdigest()[:12]}"
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for i, name in enumerate(SPECS):
        target = root / name
        if not (target / "config.json").exists():
            build_checkpoint(name, SHAPES[scale][name], texts, target, seed=i)
        paths[name] = str(target)
    (root / "models.json").write_text(json.dumps(paths, indent=2) + "\n")
    return paths
