"""Checkpoint resolution and validation.

A checkpoint reference is a local directory, a gs:// or s3:// prefix (copied to a local
cache), or a hub id `owner/name[@revision]` (downloaded, pinned to a commit). resolve()
returns a ResolvedCheckpoint with a local directory and a revision; validate() loads the
config and tokenizer and builds the head, so a checkpoint that does not fit its classifier
is refused before any data is read.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from models.heads import CheckpointMismatch, Head, build_head
from models.specs import SPECS

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
HUB_FILE_PATTERNS = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                     "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json", "spiece.model",
                     "sentencepiece.bpe.model")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
_HUB_ID_RE = re.compile(r"^[\w.-]+/[\w.-]+(@[\w./-]+)?$")
_REMOTE_SCHEMES = ("gs://", "s3://")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message names the classifier, the checkpoint and the problem."""


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
            f"{_hint(name)}"
        ) from exc
    raise CheckpointError(
        f"classifier {name!r}: checkpoint {ref!r} is not a directory, a gs:// or s3:// prefix, "
        f"or a hub id owner/name[@revision]; {_hint(name)}"
    )


def load_config_dict(local_dir: str) -> dict:
    with open(os.path.join(local_dir, "config.json"), encoding="utf-8") as handle:
        return json.load(handle)


def validate(checkpoint: ResolvedCheckpoint) -> Head:
    """Check a resolved checkpoint against its classifier; return its head or raise CheckpointError."""
    name, where = checkpoint.name, checkpoint.ref
    local = Path(checkpoint.local_dir)
    try:
        if not (local / "config.json").is_file():
            raise CheckpointMismatch("it has no config.json")
        if not any((local / w).is_file() for w in WEIGHT_FILES):
            raise CheckpointMismatch(f"it has no weights (expected one of {', '.join(WEIGHT_FILES)})")
        config = load_config_dict(str(local))
        head = build_head(SPECS[name], config)
        if not any((local / f).is_file() for f in TOKENIZER_FILES):
            raise CheckpointMismatch(f"it has no tokenizer (expected one of {', '.join(TOKENIZER_FILES)})")
        tokenizer = load_tokenizer(str(local))
        if config.get("vocab_size") and len(tokenizer) > int(config["vocab_size"]):
            raise CheckpointMismatch(f"its tokenizer has {len(tokenizer)} tokens but the model's vocabulary "
                                     f"only {config['vocab_size']}: they do not belong together")
    except (CheckpointMismatch, OSError, ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"classifier {name!r}: checkpoint {where!r} is refused: {exc}") from exc
    return head


def load_tokenizer(local_dir: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(local_dir, use_fast=True)
    except Exception as exc:
        raise CheckpointMismatch(f"its tokenizer cannot be loaded ({type(exc).__name__}: {exc})") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise CheckpointMismatch("its tokenizer is not a fast (Rust) tokenizer; save one with tokenizer.json")
    return tokenizer
