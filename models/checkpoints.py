"""Checkpoint resolution and validation.

A checkpoint reference is a local directory, a gs:// or s3:// prefix (copied to a local
cache), or a hub id `owner/name[@revision]` (downloaded, pinned to a commit). resolve()
returns a ResolvedCheckpoint with a local directory and a revision; validate() proves the
checkpoint works before any data is read: it reads the config with transformers' own semantics
(AutoConfig: num_labels defaults to 2 when config.json names no labels), builds the head, loads
the tokenizer, loads weights that are not safetensors with torch.load(weights_only=True), and
runs one probe text through tokenizer, model and head. Every transformers load passes
trust_remote_code=False, so a checkpoint that needs its own code is refused, never run.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from models.classifiers import classifier_for
from models.heads import CheckpointMismatch, Head

LOG = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
HUB_FILE_PATTERNS = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                     "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json", "spiece.model",
                     "sentencepiece.bpe.model")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
_HUB_ID_RE = re.compile(r"^[\w.-]+/[\w.-]+(@[\w./-]+)?$")
_REMOTE_SCHEMES = ("gs://", "s3://")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message names the classifier, the checkpoint and the problem.
    `unfetched`: the classifiers whose checkpoints could not be fetched (no network, no such object)."""

    def __init__(self, message: str, unfetched: tuple[str, ...] = ()):
        super().__init__(message)
        self.unfetched = tuple(unfetched)


@dataclass(frozen=True)
class ResolvedCheckpoint:
    name: str  # classifier name
    ref: str  # what the user gave
    local_dir: str
    revision: str  # hub commit, or a sha256 of the checkpoint's files


def cache_root() -> Path:
    return Path(os.environ.get("LABEL_CORPUS_CACHE", Path.home() / ".cache" / "label_corpus"))


def _hint(name: str) -> str:
    return f"point at a local checkpoint directory with --model {name}=/path/to/checkpoint"


def files_digest(directory: Path) -> str:
    """sha256 over the names and contents of a checkpoint directory's files."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.iterdir() if p.is_file() and p.suffix != ".partial"):
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def _copy_remote_prefix(prefix: str, target: Path) -> None:
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    prefix = prefix.rstrip("/") + "/"
    matches = FileSystems.match([prefix + "*"])[0].metadata_list
    if not matches:
        raise FileNotFoundError(f"no files under {prefix}")
    target.mkdir(parents=True, exist_ok=True)
    for meta in matches:
        name = meta.path[len(prefix):]
        if not name or "/" in name:
            continue
        # a name of our own: several worker processes may fill the same cache at once
        partial = target / f"{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial"
        with FileSystems.open(meta.path, compression_type=CompressionTypes.UNCOMPRESSED) as source, \
                open(partial, "wb") as sink:
            for block in iter(lambda: source.read(1 << 22), b""):
                sink.write(block)
        partial.replace(target / name)


def _download_hub(repo_id: str, revision: str | None) -> tuple[str, str]:
    from huggingface_hub import HfApi, snapshot_download

    info = HfApi().model_info(repo_id, revision=revision)
    names = {s.rfilename for s in info.siblings or []}
    weights = [w for w in WEIGHT_FILES if w in names][:1]
    if weights and weights[0].endswith(".index.json"):
        weights.append("*.safetensors" if "safetensors" in weights[0] else "pytorch_model-*.bin")
    path = snapshot_download(repo_id, revision=info.sha, allow_patterns=list(HUB_FILE_PATTERNS) + weights)
    return path, info.sha


def resolve(name: str, ref: str, revision: str | None = None) -> ResolvedCheckpoint:
    """Make a checkpoint available locally. `revision` pins a hub id (used by remote workers)."""
    ref = str(ref)
    try:
        if ref.startswith(_REMOTE_SCHEMES):
            key = hashlib.sha256(ref.rstrip("/").encode()).hexdigest()[:16]
            target = cache_root() / "remote" / key
            _copy_remote_prefix(ref, target)
            return ResolvedCheckpoint(name, ref, str(target), files_digest(target))
        if os.path.isdir(ref):
            return ResolvedCheckpoint(name, ref, os.path.abspath(ref), revision or files_digest(Path(ref)))
        if _HUB_ID_RE.match(ref) and not os.path.exists(ref):
            repo_id, _, ref_revision = ref.partition("@")
            path, sha = _download_hub(repo_id, revision or ref_revision or None)
            return ResolvedCheckpoint(name, ref, path, sha)
    except CheckpointError:
        raise
    except Exception as exc:  # network, permissions, missing objects: all end the same way
        raise CheckpointError(
            f"classifier {name!r}: checkpoint {ref!r} could not be fetched ({type(exc).__name__}: {exc}); "
            f"{_hint(name)}", unfetched=(name,)) from exc
    raise CheckpointError(
        f"classifier {name!r}: checkpoint {ref!r} is not a directory, a gs:// or s3:// prefix, "
        f"or a hub id owner/name[@revision]; {_hint(name)}"
    )


def load_config_dict(local_dir: str) -> dict:
    """config.json as transformers reads it (AutoConfig, defaults filled in: id2label always
    present), with the checkpoint's own extra keys (topics, thresholds, ...)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(local_dir, trust_remote_code=False).to_dict()
    except Exception as exc:  # noqa: BLE001 - unknown model type, remote code, malformed JSON
        raise CheckpointMismatch(f"its config.json cannot be read by transformers "
                                 f"({type(exc).__name__}: {_first_line(exc)})") from exc


# One probe text with characters many vocabularies lack, so the unknown-token path runs too.
PROBE_TEXT = "probe: a short post about the vote \u2603 \U0001d518 \u6f22\u5b57 \u0b95 12345 !?"


# Tokenizers and models that validate(keep=True) loaded, for the run's own worker when it runs in
# this process (take_validated): the DirectRunner then loads each checkpoint once, not twice.
_VALIDATED: dict[str, tuple] = {}


def validate(checkpoint: ResolvedCheckpoint, keep: bool = False) -> Head:
    """Check a resolved checkpoint against its classifier; return its head or raise CheckpointError.
    keep: hold the tokenizer and model it loaded for take_validated (an in-process worker)."""
    name, where = checkpoint.name, checkpoint.ref
    local = Path(checkpoint.local_dir)
    try:
        if not (local / "config.json").is_file():
            raise CheckpointMismatch("it has no config.json")
        if not any((local / w).is_file() for w in WEIGHT_FILES):
            raise CheckpointMismatch(f"it has no weights (expected one of {', '.join(WEIGHT_FILES)})")
        config = load_config_dict(str(local))
        head = classifier_for(name).head_for(config)
        if not any((local / f).is_file() for f in TOKENIZER_FILES):
            raise CheckpointMismatch(f"it has no tokenizer (expected one of {', '.join(TOKENIZER_FILES)})")
        tokenizer = load_tokenizer(str(local))
        if config.get("vocab_size") and len(tokenizer) > int(config["vocab_size"]):
            raise CheckpointMismatch(f"its tokenizer has {len(tokenizer)} tokens but the model's vocabulary "
                                     f"only {config['vocab_size']}: they do not belong together")
        check_pickled_weights(local)
        model = probe(local, tokenizer, head, config)
    except (CheckpointMismatch, OSError, ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"classifier {name!r}: checkpoint {where!r} is refused: {exc}") from exc
    if keep:
        _VALIDATED[str(local)] = (tokenizer, model)
    return head


def take_validated(local_dir: str) -> tuple | None:
    """(tokenizer, model) that validate(keep=True) loaded from local_dir, once; else None."""
    return _VALIDATED.pop(str(Path(local_dir)), None)


def forget_validated() -> None:
    """Drop what validate(keep=True) held and no worker took."""
    _VALIDATED.clear()


def check_pickled_weights(local: Path) -> None:
    """Weights that are not safetensors are pickles: load each with weights_only=True, which
    refuses anything but tensors, so a pickle that would run code is refused here."""
    import torch

    for path in sorted([*local.glob("pytorch_model.bin"), *local.glob("pytorch_model-*.bin")]):
        try:
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # noqa: BLE001 - unpickling errors have many types
            raise CheckpointMismatch(f"its weights {path.name} cannot be loaded as plain tensors "
                                     f"(torch.load weights_only=True: {type(exc).__name__}: "
                                     f"{_first_line(exc)})") from exc


def probe(local: Path, tokenizer, head: Head, config: dict):
    """PROBE_TEXT through the tokenizer, the model (CPU, fp32, loaded as load_weights loads it)
    and the head; returns the model."""
    import inspect

    import numpy as np
    import torch

    step = "tokenizer"
    try:
        encoded = tokenizer([PROBE_TEXT], truncation=True, max_length=64, return_tensors="pt")
        step = "model"
        model = load_weights(str(local))
        accepted = inspect.signature(model.forward).parameters
        with torch.inference_mode():
            logits = model.eval()(**{k: v for k, v in encoded.items() if k in accepted}).logits.float().numpy()
        labels = len(config.get("id2label") or {})
        if logits.shape != (1, labels) or not np.isfinite(logits).all():
            raise ValueError(f"logits of shape {logits.shape} (finite: {bool(np.isfinite(logits).all())}) "
                             f"for one text and {labels} labels")
        step = "head"
        head.to_columns(logits)
        return model
    except CheckpointMismatch:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever breaks, the message says where
        raise CheckpointMismatch(f"a probe text fails in its {step} ({type(exc).__name__}: "
                                 f"{_first_line(exc)})") from exc


def load_weights(local_dir: str, attn_implementation: str | None = None):
    """The checkpoint's model in fp32 on the CPU, in eval mode, with SDPA attention unless
    attn_implementation names another (an architecture without SDPA gets its default)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    attention = attn_implementation or "sdpa"
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            local_dir, dtype=torch.float32, trust_remote_code=False, attn_implementation=attention)
    except (ValueError, ImportError) as exc:  # an architecture without SDPA support
        if attn_implementation:
            raise
        LOG.info("%s: %s attention unavailable (%s); using the default", local_dir, attention, exc)
        model = AutoModelForSequenceClassification.from_pretrained(
            local_dir, dtype=torch.float32, trust_remote_code=False)
    return model.eval()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [""])[0][:300]


def load_tokenizer(local_dir: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(local_dir, use_fast=True, trust_remote_code=False)
    except Exception as exc:
        raise CheckpointMismatch(f"its tokenizer cannot be loaded ({type(exc).__name__}: "
                                 f"{_first_line(exc)})") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise CheckpointMismatch("its tokenizer is not a fast (Rust) tokenizer; save one with tokenizer.json")
    return tokenizer
