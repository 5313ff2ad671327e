"""A loaded classifier: a model, its tokenizer and head, and how a list of cleaned texts becomes
their output columns on it.

LoadedClassifier.classify tokenizes once, sorts by token length, cuts sub-batches by a token
budget and an item cap (models.batching), pads each to its own longest member, runs it under
torch.inference_mode (bf16/fp16 autocast on CUDA), and puts the results back in input order.
A sub-batch that fails (out of memory or anything else) is halved and retried down to the single
texts that fail, which get an InferenceFailure. The forward pass is a field (`forward`,
run_forward by default), so tests inject faults without patching.

Device settings:
- CUDA: bf16 autocast (fp16 where the GPU has no bf16), SDPA attention, host-to-device copies
  from pinned staging buffers that are allocated once and reused.
- CPU: a backend and a precision (cpu_choice). By default OpenVINO (models/openvino_backend.py)
  at fp32: the fastest choice whose labels agree with torch fp32's on >= 99.5% of posts for every
  classifier (benchmarks/label_agreement.py).
  `cpu_backend="torch"` runs torch: fp32 by default, `bf16` under bf16 autocast, `int8` with
  the linear layers quantized dynamically; OpenVINO's int8 is an IR built offline
  (models/export.py). Threads: the worker's cores, or `cpu_threads`.
"""
from __future__ import annotations

import inspect
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from models.batching import (DEFAULT_MAX_ITEMS, DEFAULT_MAX_TOKENS, DEFAULT_OVERHEAD_TOKENS, pad_sub_batch,
                             plan_in_order, plan_sub_batches)
from models.checkpoints import (ResolvedCheckpoint, load_config_dict, load_tokenizer, load_weights, resolve,
                                take_validated)
from models import openvino_backend
from models.classifiers import classifier_for
from models.heads import Head
from models.openvino_backend import OpenVINOModel
from models.runtime import (PinnedStaging, autocast_dtype_for, pick_device, release_free_memory, token_limit,
                            worker_cores)

LOG = logging.getLogger(__name__)
CPU_BACKENDS = ("torch", "openvino")
CPU_PRECISIONS = ("fp32", "bf16", "int8")
STATS = ("real_tokens", "padded_tokens", "sub_batches", "oom_splits", "failure_splits", "inference_us")
# Characters per token that max_length tokens cannot exceed on average: a token of the
# tokenizers we load covers at most about 100 characters of a cleaned text plus the single space
# cleaning leaves between words (WordPiece makes a longer word one [UNK]), so the first
# max_length x this many characters hold every character the first max_length tokens come from.
CHARS_PER_TOKEN_BOUND = 128
# What LoadedClassifier.tokenize_each gives: token ids per text, token type ids (or None), and
# {index: reason} for the texts the tokenizer failed on.
Tokenized = tuple[list[list[int]], Optional[list[list[int]]], dict[int, str]]


@dataclass(frozen=True)
class InferenceFailure:
    """The inference of a text that could not be classified; its record goes to the dead letters."""

    reason: str


@dataclass(frozen=True)
class InferenceOptions:
    """How the classifiers of a run are loaded and batched (the command line's inference options).

    batch_size: texts per RunInference batch (Beam's BatchElements, fixed size: the sort works
    within a batch, so batches are kept full rather than grown adaptively from one text).
    max_tokens_per_batch / max_items_per_batch: padded tokens / texts per forward pass (None: the
    device's default). length_buckets: character-length boundaries for Beam's length-aware
    batching, which needs a max_batch_duration_secs (bucket_wait_secs).
    model_copies: on CUDA, model copies per machine shared by its worker processes."""

    device: str = "auto"
    batch_size: int = 1024
    max_tokens_per_batch: Optional[int] = None
    max_items_per_batch: Optional[int] = None
    sort_by_length: bool = True
    cpu_backend: Optional[str] = None  # None: the measured default (cpu_choice)
    cpu_precision: Optional[str] = None
    cpu_threads: Optional[int] = None
    attn_implementation: Optional[str] = None
    length_buckets: tuple[int, ...] = ()
    bucket_wait_secs: int = 10
    model_copies: Optional[int] = None

    def __post_init__(self):
        if self.cpu_backend not in (None, *CPU_BACKENDS):
            raise ValueError(f"cpu_backend must be one of {CPU_BACKENDS}, not {self.cpu_backend!r}")
        if self.cpu_precision not in (None, *CPU_PRECISIONS):
            raise ValueError(f"cpu_precision must be one of {CPU_PRECISIONS}, not {self.cpu_precision!r}")

    def with_cpu_choice(self) -> "InferenceOptions":
        """These options with the CPU backend and precision settled (cpu_choice), so that the
        launcher's record of a run and its workers agree."""
        import dataclasses

        backend, precision = cpu_choice(self)
        return dataclasses.replace(self, cpu_backend=backend, cpu_precision=precision)


def cpu_choice(options: InferenceOptions) -> tuple[str, str]:
    """(backend, precision) of a CPU run: the options', else the default measured by
    benchmarks/label_agreement.py, the fastest with >= 99.5% label agreement with torch fp32 for
    every classifier: OpenVINO fp32 (OpenVINO bf16 was twice as fast but kept 99.35% of the demo
    emotion classifier's labels; benchmarks/README.md). Either backend defaults to fp32."""
    return options.cpu_backend or "openvino", options.cpu_precision or "fp32"


@dataclass
class LoadedClassifier:
    model: Any
    tokenizer: Any
    head: Head
    device: str
    max_length: int
    autocast_dtype: Any  # torch dtype or None
    uses_token_types: bool  # BERT takes token_type_ids; DistilBERT and RoBERTa do not need them
    name: str = ""
    max_tokens: int = DEFAULT_MAX_TOKENS["cpu"]
    max_items: int = DEFAULT_MAX_ITEMS["cpu"]
    sort_by_length: bool = True
    staging: Optional[PinnedStaging] = None  # CUDA only
    # oneDNN keeps a compiled primitive for every input shape it meets, and with a new padded
    # shape in almost every pass that cache grows with the corpus; fp32 on CPU runs as fast
    # without it (MKL), so it is switched off around those passes. bf16 needs it.
    onednn: bool = True
    # One padded sub-batch through the model (see run_forward); tests inject failures here.
    forward: Callable[["LoadedClassifier", dict], np.ndarray] = field(default=None, repr=False)

    def __post_init__(self):
        if self.forward is None:
            self.forward = run_forward

    def classify(self, texts: Sequence[str], tokenized: Optional[Tokenized] = None,
                 on_done: Optional[Callable[[int], None]] = None) -> tuple[list[dict | InferenceFailure], dict[str, int]]:
        """Columns for non-empty texts, in input order (an InferenceFailure where a text could not
        be run), and counts for the metrics (STATS). `tokenized`: what tokenize_each(texts) gives,
        when it was done ahead (LoadedClassifiers.classify_all tokenizes on a thread of its own)."""
        logits, failures, stats = self.logits(texts, tokenized, on_done)
        rows: list[dict | InferenceFailure] = list(self.head.to_columns(logits))
        for position, reason in failures.items():
            rows[position] = InferenceFailure(reason)
        if self.device == "cpu":
            release_free_memory()
        return rows, stats

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], Optional[list[list[int]]]]:
        """Token ids (and token type ids where the model takes them), with special tokens, cut at
        max_length: what tokenizer(texts, truncation=True, max_length=...) gives, straight from
        the fast tokenizer's backend (transformers' conversion of each encoding to a dict is a
        sizeable share of tokenization time on short posts)."""
        backend = self.tokenizer.backend_tokenizer
        backend.no_padding()
        backend.enable_truncation(self.max_length, stride=0, strategy="longest_first",
                                  direction=getattr(self.tokenizer, "truncation_side", "right"))
        # encode_batch_fast skips the character offsets, which we do not use (tokenizers 0.21+)
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        encodings = encode([text[:self.max_chars()] for text in texts], add_special_tokens=True)
        ids = [encoding.ids for encoding in encodings]
        return ids, ([encoding.type_ids for encoding in encodings] if self.uses_token_types else None)

    def max_chars(self) -> int:
        """Characters of a cleaned text the tokenizer sees: far more than max_length tokens can
        cover (see transforms.cleaning.clean_for_models, which already bounds what arrives)."""
        return self.max_length * CHARS_PER_TOKEN_BOUND

    def tokenize_each(self, texts: Sequence[str]) -> Tokenized:
        """tokenize(), falling back to one text at a time when the batch fails: the texts that
        fail alone get empty ids and a reason in the returned {index: reason}."""
        try:
            ids, token_types = self.tokenize(texts)
            return ids, token_types, {}
        except Exception:  # noqa: BLE001 - any tokenizer error: find the texts that cause it
            pass
        ids, token_types, failures = [], ([] if self.uses_token_types else None), {}
        for index, text in enumerate(texts):
            try:
                one_ids, one_types = self.tokenize([text])
                ids.append(one_ids[0])
                if token_types is not None:
                    token_types.append(one_types[0])
            except Exception as exc:  # noqa: BLE001
                failures[index] = _reason(f"tokenizer of {self.name} failed", exc)
                ids.append([])
                if token_types is not None:
                    token_types.append([])
        return ids, token_types, failures

    def logits(self, texts: Sequence[str], tokenized: Optional[Tokenized] = None,
               on_done: Optional[Callable[[int], None]] = None) -> tuple[np.ndarray, dict[int, str], dict[str, int]]:
        """Logits as float32 [len(texts), num_labels] in input order, {index: reason} for texts
        that could not be run (their rows are NaN), and counts (STATS); on_done(n) once n more texts
        are done (a sub-batch run, or a text given up on)."""
        import torch

        ids, token_types, failures = self.tokenize_each(texts) if tokenized is None else tokenized
        failures = dict(failures)
        lengths = [len(x) for x in ids]
        runnable = [i for i in range(len(ids)) if i not in failures]
        runnable_lengths = [lengths[i] for i in runnable]
        if self.sort_by_length:
            overhead = DEFAULT_OVERHEAD_TOKENS[self.device]
            planned = plan_sub_batches(runnable_lengths, self.max_tokens, self.max_items, overhead)
        else:
            planned = plan_in_order(runnable_lengths, self.max_tokens, self.max_items)
        pending = [[runnable[i] for i in batch] for batch in planned]
        # pop() takes the longest first: on CUDA the largest allocation comes first and is reused
        pad_id = self.tokenizer.pad_token_id or 0
        out = np.full((len(ids), self.model.config.num_labels), np.nan, dtype=np.float32)
        stats = dict.fromkeys(STATS, 0)
        while pending:
            indices = pending.pop()
            started = time.perf_counter()
            try:
                arrays = pad_sub_batch(ids, token_types, lengths, indices, pad_id)
                logits = self.forward(self, arrays)
                if logits.shape != (len(indices), out.shape[1]):
                    raise ValueError(f"the model returned logits of shape {logits.shape} for "
                                     f"{len(indices)} texts and {out.shape[1]} labels")
                out[indices] = logits
            except Exception as exc:  # noqa: BLE001 - any failure of a sub-batch is isolated to its texts
                # Beam has no batch back-off (apache/beam#21447) and its exception handling
                # dead-letters whole batches: halve and retry, down to the single texts that fail.
                out_of_memory = isinstance(exc, torch.OutOfMemoryError)
                if out_of_memory and self.device == "cuda":
                    torch.cuda.empty_cache()
                stats["oom_splits" if out_of_memory else "failure_splits"] += 1
                if len(indices) == 1:
                    what = "out of memory" if out_of_memory else "inference failed"
                    failures[indices[0]] = _reason(f"{what} in {self.name} even alone", exc)
                    if on_done:
                        on_done(1)
                else:
                    half = len(indices) // 2
                    pending += [indices[:half], indices[half:]]
                continue
            seconds = time.perf_counter() - started
            stats["inference_us"] += int(seconds * 1e6)
            stats["sub_batches"] += 1
            stats["real_tokens"] += sum(lengths[i] for i in indices)
            stats["padded_tokens"] += arrays["input_ids"].size
            if on_done:
                on_done(len(indices))
        return out, failures, stats


def _reason(what: str, exc: BaseException) -> str:
    return f"{what}: {type(exc).__name__}: {exc}"[:500]



def run_forward(loaded: "LoadedClassifier", arrays: dict) -> np.ndarray:
    """One padded sub-batch (numpy int64 arrays) through the model; float32 logits."""
    import torch

    if isinstance(loaded.model, OpenVINOModel):
        return loaded.model(arrays)
    if loaded.staging is not None:
        inputs = {k: loaded.staging.to_device(k, v, loaded.device) for k, v in arrays.items()}
    else:
        inputs = {k: torch.from_numpy(v).to(loaded.device) for k, v in arrays.items()}
    onednn = torch.backends.mkldnn.enabled
    if onednn != loaded.onednn:
        torch.backends.mkldnn.enabled = loaded.onednn
    try:
        with torch.inference_mode(), torch.autocast(
            device_type=loaded.device, dtype=loaded.autocast_dtype, enabled=loaded.autocast_dtype is not None
        ):
            return loaded.model(**inputs).logits.float().cpu().numpy()
    finally:
        if onednn != loaded.onednn:
            torch.backends.mkldnn.enabled = onednn



def local_dir_of(checkpoint: ResolvedCheckpoint) -> str:
    if os.path.isdir(checkpoint.local_dir):
        return checkpoint.local_dir
    # A remote worker: fetch the same checkpoint (a hub id pinned to the resolved commit).
    pinned = checkpoint.revision if not checkpoint.revision.startswith("sha256:") else None
    return resolve(checkpoint.name, checkpoint.ref, revision=pinned).local_dir


def load_classifier(checkpoint: ResolvedCheckpoint, options: InferenceOptions = InferenceOptions(),
                    forward: Callable | None = None) -> LoadedClassifier:
    """The checkpoint's model, tokenizer and head, loaded on the options' device."""
    import torch

    name = checkpoint.name
    local_dir = local_dir_of(checkpoint)
    device = pick_device(options.device)
    if device == "cpu":
        threads = options.cpu_threads or worker_cores()
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    config = load_config_dict(local_dir)
    validated = take_validated(local_dir) if options.attn_implementation is None else None
    backend, precision = cpu_choice(options) if device == "cpu" else ("torch", None)
    if backend == "openvino":
        tokenizer = validated[0] if validated else load_tokenizer(local_dir)
        model = openvino_backend.load(local_dir, checkpoint.revision, precision, torch.get_num_threads(),
                                      len(config["id2label"]),
                                      lambda: validated[1] if validated else load_weights(local_dir))
        validated = None  # the torch model, if any, is not kept
        uses_token_types = "token_type_ids" in model.input_names
    else:
        tokenizer, model = validated or (load_tokenizer(local_dir), load_weights(local_dir, options.attn_implementation))
        model.to(device).eval()
        uses_token_types = "token_type_ids" in inspect.signature(model.forward).parameters
    if not getattr(tokenizer, "is_fast", False):
        raise RuntimeError(f"{name}: {local_dir} has no fast tokenizer (tokenizer.json)")
    autocast_dtype = autocast_dtype_for(device, precision if backend == "torch" else "fp32")
    if device == "cpu" and backend == "torch" and precision == "int8":
        import warnings

        with warnings.catch_warnings():  # torch.ao.quantization warns that it moves to torchao
            warnings.simplefilter("ignore")
            from torch.ao.quantization import quantize_dynamic

            model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    elif device == "cpu" and autocast_dtype is not None:
        # Autocast would cast every linear layer's fp32 weights to bf16 in every forward pass;
        # cast them once instead (the same rounding, so the same results).
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.to(autocast_dtype)
    max_length = token_limit(tokenizer, config)
    max_tokens = options.max_tokens_per_batch or DEFAULT_MAX_TOKENS[device]
    max_items = options.max_items_per_batch or DEFAULT_MAX_ITEMS[device]
    LOG.info("loaded %s from %s on %s (%s %s, threads %d)", name, local_dir, device, backend,
             precision or autocast_dtype, torch.get_num_threads())
    return LoadedClassifier(model, tokenizer, classifier_for(checkpoint.name).head_for(config), device, max_length,
                            autocast_dtype, uses_token_types,
                            name=name, max_tokens=max_tokens, max_items=max_items,
                            sort_by_length=options.sort_by_length,
                            staging=PinnedStaging() if device == "cuda" else None,
                            onednn=not (device == "cpu" and backend == "torch" and precision == "fp32"),
                            forward=forward)

