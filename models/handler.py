"""Our RunInference ModelHandler: raw texts in, schema columns out.

Within each batch RunInference hands us, texts are tokenized once, sorted by token
length, cut into sub-batches by a token budget and an item cap, padded only to each
sub-batch's longest member, run under torch.inference_mode (bf16/fp16 autocast on CUDA),
and the results are put back in input order. Empty texts (None or "") get null columns.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from models.checkpoints import ResolvedCheckpoint, load_config_dict, load_tokenizer, resolve
from models.heads import Head, build_head
from models.specs import SPECS

LOG = logging.getLogger(__name__)
DEFAULT_MAX_TOKENS = {"cpu": 4096, "cuda": 65536}
DEFAULT_MAX_ITEMS = {"cpu": 64, "cuda": 1024}


def plan_sub_batches(lengths: Sequence[int], max_tokens: int, max_items: int) -> list[list[int]]:
    """Indices sorted by length, cut so that each sub-batch's padded size
    (items x longest item) stays within max_tokens and its item count within max_items.
    A single item longer than max_tokens still gets a sub-batch of its own."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[index]  # ascending order: the newcomer is the longest
        if current and ((len(current) + 1) * longest > max_tokens or len(current) >= max_items):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device")
    return requested


@dataclass(frozen=True)
class InferenceFailure:
    """The inference of a text that could not be classified; its record goes to the dead letters."""

    reason: str


@dataclass
class LoadedClassifier:
    model: Any
    tokenizer: Any
    head: Head
    device: str
    max_length: int
    autocast_dtype: Any  # torch dtype or None
    uses_token_types: bool  # BERT takes token_type_ids; DistilBERT and RoBERTa do not need them


def position_limit(config: dict) -> int:
    """How many tokens the model's position embeddings allow."""
    limit = int(config.get("max_position_embeddings") or 512)
    if config.get("model_type") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        limit -= int(config.get("pad_token_id", 1)) + 1  # positions start after the padding index
    return limit


class TextClassifierHandler(ModelHandler[Optional[str], Optional[dict | InferenceFailure], LoadedClassifier]):
    """A ModelHandler for one sequence classifier of SPECS, fed cleaned texts."""

    def __init__(
        self,
        checkpoint: ResolvedCheckpoint,
        *,
        device: str = "auto",
        batch_size: int = 256,
        max_tokens_per_batch: int | None = None,
        max_items_per_batch: int | None = None,
        sort_by_length: bool = True,
    ):
        super().__init__(min_batch_size=1, max_batch_size=batch_size)
        self.checkpoint = checkpoint
        self.spec = SPECS[checkpoint.name]
        self.device_request = device
        self.batch_size = batch_size
        self.max_tokens_per_batch = max_tokens_per_batch
        self.max_items_per_batch = max_items_per_batch
        self.sort_by_length = sort_by_length

    def _local_dir(self) -> str:
        import os

        if os.path.isdir(self.checkpoint.local_dir):
            return self.checkpoint.local_dir
        # A remote worker: fetch the same checkpoint (a hub id pinned to the resolved commit).
        pinned = self.checkpoint.revision if not self.checkpoint.revision.startswith("sha256:") else None
        return resolve(self.checkpoint.name, self.checkpoint.ref, revision=pinned).local_dir

    def load_model(self) -> LoadedClassifier:
        import torch
        from transformers import AutoModelForSequenceClassification

        local_dir = self._local_dir()
        device = pick_device(self.device_request)
        config = load_config_dict(local_dir)
        tokenizer = load_tokenizer(local_dir)
        model = AutoModelForSequenceClassification.from_pretrained(
            local_dir, dtype=torch.float32, trust_remote_code=False
        )
        model.to(device).eval()
        autocast_dtype = None
        if device == "cuda":
            autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        max_length = min(int(tokenizer.model_max_length or 10**9), position_limit(config))
        uses_token_types = "token_type_ids" in inspect.signature(model.forward).parameters
        LOG.info("loaded %s from %s on %s", self.spec.name, local_dir, device)
        return LoadedClassifier(model, tokenizer, build_head(self.spec, config), device, max_length,
                                autocast_dtype, uses_token_types)

    def _budget(self, device: str) -> tuple[int, int]:
        return (self.max_tokens_per_batch or DEFAULT_MAX_TOKENS[device],
                self.max_items_per_batch or DEFAULT_MAX_ITEMS[device])

    def logits(self, texts: Sequence[str], loaded: LoadedClassifier) -> tuple[np.ndarray, dict[int, str]]:
        """Logits for non-empty texts, in input order, as float32 [len(texts), num_labels], and
        {index: reason} for texts that could not be run (their rows are NaN)."""
        import torch

        encoded = loaded.tokenizer(list(texts), truncation=True, max_length=loaded.max_length,
                                   return_token_type_ids=loaded.uses_token_types, return_attention_mask=False)
        ids = encoded["input_ids"]
        token_types = encoded.get("token_type_ids") if loaded.uses_token_types else None
        lengths = [len(x) for x in ids]
        max_tokens, max_items = self._budget(loaded.device)
        if self.sort_by_length:
            plan = plan_sub_batches(lengths, max_tokens, max_items)
        else:
            plan = [list(range(i, min(i + max_items, len(ids)))) for i in range(0, len(ids), max_items)]
        pad_id = loaded.tokenizer.pad_token_id or 0

        def padded_inputs(indices: list[int]) -> dict:
            width = max(lengths[i] for i in indices)
            arrays = {"input_ids": np.full((len(indices), width), pad_id, dtype=np.int64),
                      "attention_mask": np.zeros((len(indices), width), dtype=np.int64)}
            if token_types is not None:
                arrays["token_type_ids"] = np.zeros((len(indices), width), dtype=np.int64)
            for row, i in enumerate(indices):
                arrays["input_ids"][row, : lengths[i]] = ids[i]
                arrays["attention_mask"][row, : lengths[i]] = 1
                if token_types is not None:
                    arrays["token_type_ids"][row, : lengths[i]] = token_types[i]
            return arrays

        out = np.full((len(ids), loaded.model.config.num_labels), np.nan, dtype=np.float32)
        failures: dict[int, str] = {}
        real = padded = 0
        pending = list(plan)
        while pending:
            indices = pending.pop()
            arrays = padded_inputs(indices)
            try:
                out[indices] = self.forward(loaded, arrays)
            except torch.OutOfMemoryError as exc:
                # Beam has no batch back-off (apache/beam#21447): halve and retry, down to single texts.
                if loaded.device == "cuda":
                    torch.cuda.empty_cache()
                Metrics.counter(self.get_metrics_namespace(), "oom_splits").inc()
                if len(indices) == 1:
                    failures[indices[0]] = f"out of memory in {self.spec.name} even alone: {exc}"[:500]
                else:
                    half = len(indices) // 2
                    pending += [indices[:half], indices[half:]]
                continue
            real += int(arrays["attention_mask"].sum())
            padded += arrays["attention_mask"].size
        namespace = self.get_metrics_namespace()
        Metrics.counter(namespace, "real_tokens").inc(real)
        Metrics.counter(namespace, "padded_tokens").inc(padded)
        return out, failures

    @staticmethod
    def forward(loaded: LoadedClassifier, arrays: dict) -> np.ndarray:
        import torch

        inputs = {k: torch.from_numpy(v).to(loaded.device, non_blocking=True) for k, v in arrays.items()}
        with torch.inference_mode(), torch.autocast(
            device_type=loaded.device, dtype=loaded.autocast_dtype, enabled=loaded.autocast_dtype is not None
        ):
            return loaded.model(**inputs).logits.float().cpu().numpy()

    def run_inference(
        self,
        batch: Sequence[Optional[str]],
        model: LoadedClassifier,
        inference_args: Optional[dict[str, Any]] = None,
    ) -> Iterable[PredictionResult]:
        present = [i for i, text in enumerate(batch) if text]
        columns: list[Optional[dict | InferenceFailure]] = [None] * len(batch)
        if present:
            logits, failures = self.logits([batch[i] for i in present], model)
            for position, (i, row) in enumerate(zip(present, model.head.to_columns(logits))):
                columns[i] = InferenceFailure(failures[position]) if position in failures else row
        Metrics.counter(self.get_metrics_namespace(), "empty_texts").inc(len(batch) - len(present))
        return [PredictionResult(text, cols, self.checkpoint.ref) for text, cols in zip(batch, columns)]

    def get_num_bytes(self, batch: Sequence[Optional[str]]) -> int:
        return sum(len(text.encode("utf-8")) for text in batch if text)

    def get_metrics_namespace(self) -> str:
        return f"classifier_{self.spec.name}"

    def share_model_across_processes(self) -> bool:
        return pick_device(self.device_request) == "cuda"
