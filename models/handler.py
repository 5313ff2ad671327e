"""Our RunInference ModelHandler: raw texts in, schema columns out.

Within each batch RunInference hands us, texts are tokenized once, sorted by token
length, cut into sub-batches by a token budget and an item cap, padded only to each
sub-batch's longest member, run under torch.inference_mode, and the results are put back
in input order. Empty texts (None or "") get null columns.

Device settings:
- CUDA: bf16 autocast (fp16 where the GPU has no bf16), SDPA attention, host-to-device copies
  from pinned staging buffers that are allocated once and reused, and the model shared by the
  worker processes of a machine (share_model_across_processes; `model_copies` copies).
- CPU: torch threads set from the worker's cores (or `cpu_threads`), fp32 by default;
  `cpu_dtype="bf16"` runs under bf16 autocast and `quantize_int8=True` quantizes the linear layers
  dynamically to int8. Both change scores slightly (benchmarks/throughput.py measures how much).

The work on a batch happens in LoadedClassifier.classify, a method, so that it runs where the
model lives: in this process, or in the process that holds the shared model (Beam then hands
run_inference a proxy, and only texts and result columns cross the process boundary).
"""
from __future__ import annotations

import inspect
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from models.checkpoints import ResolvedCheckpoint, load_config_dict, load_tokenizer, resolve
from models.heads import Head, build_head
from models.specs import SPECS

LOG = logging.getLogger(__name__)
DEFAULT_MAX_TOKENS = {"cpu": 8192, "cuda": 65536}
DEFAULT_MAX_ITEMS = {"cpu": 256, "cuda": 1024}
# What one forward pass costs beyond its tokens, in tokens (see plan_sub_batches).
DEFAULT_OVERHEAD_TOKENS = {"cpu": 128, "cuda": 2048}
CPU_DTYPES = ("fp32", "bf16")
STATS = ("real_tokens", "padded_tokens", "sub_batches", "oom_splits", "failure_splits", "inference_us")
# Characters per token that max_length tokens cannot exceed on average: a token of the
# tokenizers we load covers at most about 100 characters of a cleaned text plus the single space
# cleaning leaves between words (WordPiece makes a longer word one [UNK]), so the first
# max_length x this many characters hold every character the first max_length tokens come from.
CHARS_PER_TOKEN_BOUND = 128


def plan_sub_batches(lengths: Sequence[int], max_tokens: int, max_items: int,
                     overhead_tokens: int | None = None) -> list[list[int]]:
    """Indices sorted by length and cut into consecutive sub-batches so that each one's padded
    size (items x longest item) stays within max_tokens and its item count within max_items
    (a single item longer than max_tokens still gets a sub-batch of its own), choosing the cuts
    that minimise the estimated cost: the padded tokens plus `overhead_tokens` per forward pass
    (what a pass costs beyond its tokens: launch and framework overhead, small-matrix
    inefficiency). So very short posts do not ride with posts several times longer unless
    they are few, and sub-batches are not cut so thin that per-pass overhead dominates."""
    overhead = DEFAULT_OVERHEAD_TOKENS["cpu"] if overhead_tokens is None else overhead_tokens
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    count = len(order)
    if count == 0:
        return []
    ordered = np.array([lengths[i] for i in order], dtype=np.int64)
    best = np.zeros(count + 1, dtype=np.float64)  # best[j]: least cost of the first j items
    start = np.zeros(count + 1, dtype=np.int64)  # start[j]: where the last sub-batch of that plan starts
    for end in range(1, count + 1):
        longest = max(int(ordered[end - 1]), 1)
        size = max(1, min(max_items, max_tokens // longest))
        first = max(0, end - size)
        starts = np.arange(first, end)
        costs = best[first:end] + overhead + (end - starts) * longest
        pick = int(np.argmin(costs))  # the first minimum: the largest sub-batch among equals
        best[end] = costs[pick]
        start[end] = first + pick
    batches: list[list[int]] = []
    end = count
    while end > 0:
        batches.append(order[int(start[end]):end])
        end = int(start[end])
    batches.reverse()
    return batches


def plan_in_order(lengths: Sequence[int], max_tokens: int, max_items: int) -> list[list[int]]:
    """plan_sub_batches without the sort: consecutive runs in input order, cut by the same
    budgets (padded size and item count). What the unsorted baseline of the benchmark runs."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index, length in enumerate(lengths):
        if current and ((len(current) + 1) * max(longest, length) > max_tokens or len(current) >= max_items):
            batches.append(current)
            current, longest = [], 0
        current.append(index)
        longest = max(longest, length)
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


def worker_cores() -> int:
    """The cores this process may run on (its CPU affinity), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def autocast_dtype_for(device: str, cpu_dtype: str = "fp32"):
    """The autocast dtype of a device: bf16 on a CUDA GPU that has it, else fp16; on CPU
    bf16 when asked for, else None (plain fp32)."""
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_dtype == "bf16" else None


@dataclass(frozen=True)
class InferenceFailure:
    """The inference of a text that could not be classified; its record goes to the dead letters."""

    reason: str


class PinnedStaging:
    """Page-locked host buffers, one per input name, allocated once at the largest size seen and
    reused for every sub-batch, so host-to-device copies are asynchronous DMA without a new
    allocation per batch. Reuse is safe: each forward pass waits for its logits (.cpu()), which
    orders it after the copies that fed it."""

    def __init__(self):
        self.buffers: dict[str, Any] = {}

    def to_device(self, name: str, array: np.ndarray, device: str):
        import torch

        size = array.size
        buffer = self.buffers.get(name)
        if buffer is None or buffer.numel() < size:
            buffer = torch.empty(max(size, 1 << 16), dtype=torch.int64).pin_memory()
            self.buffers[name] = buffer
        host = buffer[:size].view(array.shape)
        host.copy_(torch.from_numpy(array))
        return host.to(device, non_blocking=True)


class PassCostModel:
    """Learns what one forward pass costs beyond its tokens, in tokens, from the passes it has
    timed: a least-squares line seconds = a + b x padded_tokens over recent passes (exponentially
    weighted), overhead = a / b. That ratio depends on the model, the device and how busy the
    machine is (on a CPU shared with other work, every pass also waits for its threads to be
    scheduled), so the planner uses what it measures, starting from the device's default and
    kept within [minimum, maximum]. It only moves the cuts between sub-batches: scores do not
    depend on it."""

    def __init__(self, prior: float, minimum: float = 16, maximum: float = 8192, decay: float = 0.97,
                 warmup: int = 8):
        self.prior, self.minimum, self.maximum = prior, minimum, maximum
        self.decay, self.warmup = decay, warmup
        self.count = 0
        self.sums = np.zeros(5)  # weight, x, y, xx, xy

    def observe(self, tokens: int, seconds: float) -> None:
        self.sums *= self.decay
        self.sums += (1.0, tokens, seconds, tokens * tokens, tokens * seconds)
        self.count += 1

    def overhead_tokens(self) -> float:
        if self.count < self.warmup:
            return self.prior
        weight, x, y, xx, xy = self.sums
        variance = xx / weight - (x / weight) ** 2
        if variance <= (0.05 * x / weight) ** 2:  # passes of nearly one size: no slope to fit
            return self.prior
        slope = (xy / weight - (x / weight) * (y / weight)) / variance
        if slope <= 0:
            return self.prior
        intercept = y / weight - slope * x / weight
        return float(min(self.maximum, max(self.minimum, intercept / slope)))


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
    pass_cost: Optional[PassCostModel] = None  # None: the device's fixed default overhead
    # oneDNN keeps a compiled primitive for every input shape it meets, and with a new padded
    # shape in almost every pass that cache grows with the corpus; fp32 on CPU runs as fast
    # without it (MKL), so it is switched off around those passes. bf16 needs it.
    onednn: bool = True

    def classify(self, texts: Sequence[str]) -> tuple[list[dict | InferenceFailure], dict[str, int]]:
        """Columns for non-empty texts, in input order (an InferenceFailure where a text could not
        be run), and counts for the metrics (STATS)."""
        logits, failures, stats = self.logits(texts)
        rows: list[dict | InferenceFailure] = list(self.head.to_columns(logits))
        for position, reason in failures.items():
            rows[position] = InferenceFailure(reason)
        if self.device == "cpu":
            release_free_memory()
        return rows, stats

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], Optional[list[list[int]]]]:
        encoded = self.tokenizer([text[:self.max_chars()] for text in texts], truncation=True,
                                 max_length=self.max_length, return_token_type_ids=self.uses_token_types,
                                 return_attention_mask=False)
        return encoded["input_ids"], (encoded.get("token_type_ids") if self.uses_token_types else None)

    def max_chars(self) -> int:
        """Characters of a cleaned text the tokenizer sees: far more than max_length tokens can
        cover (see transforms.cleaning.clean_for_models, which already bounds what arrives)."""
        return self.max_length * CHARS_PER_TOKEN_BOUND

    def tokenize_each(self, texts: Sequence[str]) -> tuple[list, Optional[list], dict[int, str]]:
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

    def logits(self, texts: Sequence[str]) -> tuple[np.ndarray, dict[int, str], dict[str, int]]:
        """Logits as float32 [len(texts), num_labels] in input order, {index: reason} for texts
        that could not be run (their rows are NaN), and counts (STATS)."""
        import torch

        ids, token_types, failures = self.tokenize_each(texts)
        lengths = [len(x) for x in ids]
        runnable = [i for i in range(len(ids)) if i not in failures]
        runnable_lengths = [lengths[i] for i in runnable]
        if self.sort_by_length:
            overhead = (self.pass_cost.overhead_tokens() if self.pass_cost is not None
                        else DEFAULT_OVERHEAD_TOKENS[self.device])
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
                logits = TextClassifierHandler.forward(self, arrays)
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
                else:
                    half = len(indices) // 2
                    pending += [indices[:half], indices[half:]]
                continue
            seconds = time.perf_counter() - started
            if self.pass_cost is not None:
                self.pass_cost.observe(arrays["input_ids"].size, seconds)
            stats["inference_us"] += int(seconds * 1e6)
            stats["sub_batches"] += 1
            stats["real_tokens"] += sum(lengths[i] for i in indices)
            stats["padded_tokens"] += arrays["input_ids"].size
        return out, failures, stats


def _reason(what: str, exc: BaseException) -> str:
    return f"{what}: {type(exc).__name__}: {exc}"[:500]


def pad_sub_batch(ids, token_types, lengths, indices: list[int], pad_id: int) -> dict[str, np.ndarray]:
    """The sub-batch's inputs padded to its longest member, as int64 numpy arrays."""
    width = max(lengths[i] for i in indices)
    rows = len(indices)
    arrays = {"input_ids": np.full((rows, width), pad_id, dtype=np.int64),
              "attention_mask": np.zeros((rows, width), dtype=np.int64)}
    if token_types is not None:
        arrays["token_type_ids"] = np.zeros((rows, width), dtype=np.int64)
    for row, i in enumerate(indices):
        n = lengths[i]
        arrays["input_ids"][row, :n] = ids[i]
        arrays["attention_mask"][row, :n] = 1
        if token_types is not None:
            arrays["token_type_ids"][row, :n] = token_types[i]
    return arrays


def release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc's malloc_trim). Tensors of a new shape in
    every pass leave the C heap fragmented, and without this the resident size creeps up with
    the number of texts; with it, memory stays flat. A no-op where there is no glibc."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None


def position_limit(config: dict) -> int:
    """How many tokens the model's position embeddings allow."""
    limit = int(config.get("max_position_embeddings") or 512)
    if config.get("model_type") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        pad = config.get("pad_token_id")
        limit -= (1 if pad is None else int(pad)) + 1  # positions start after the padding index
    return limit


def text_length(element) -> int:
    """Beam's batch_length_fn: characters of the text, for keyed (row, text) or bare elements."""
    text = element[1] if isinstance(element, tuple) else element
    return len(text) if text else 0


class TextClassifierHandler(ModelHandler[Optional[str], Optional[dict | InferenceFailure], LoadedClassifier]):
    """A ModelHandler for one sequence classifier of SPECS, fed cleaned texts.

    batch_size: texts per RunInference batch (Beam's BatchElements, fixed size: the sort works
    within a batch, so batches are kept full rather than grown adaptively from one text).
    max_tokens_per_batch / max_items_per_batch: padded tokens / texts per forward pass.
    length_buckets: character-length boundaries for Beam's length-aware batching
    (batch_length_fn / batch_bucket_boundaries): texts of similar length meet in the same batch.
    Beam applies it on its stateful batching path only, which also needs a
    max_batch_duration_secs (`bucket_wait_secs`).
    """

    def __init__(
        self,
        checkpoint: ResolvedCheckpoint,
        *,
        device: str = "auto",
        batch_size: int = 1024,
        max_tokens_per_batch: int | None = None,
        max_items_per_batch: int | None = None,
        sort_by_length: bool = True,
        cpu_dtype: str = "fp32",
        quantize_int8: bool = False,
        cpu_threads: int | None = None,
        attn_implementation: str | None = None,
        length_buckets: Sequence[int] | None = None,
        bucket_wait_secs: int = 10,
        model_copies: int | None = None,
    ):
        if cpu_dtype not in CPU_DTYPES:
            raise ValueError(f"cpu_dtype must be one of {CPU_DTYPES}, not {cpu_dtype!r}")
        if quantize_int8 and cpu_dtype != "fp32":
            raise ValueError("int8 quantization runs in fp32 around the int8 matmuls: use cpu_dtype='fp32' with it")
        batching: dict[str, Any] = {}
        if length_buckets:
            batching = dict(batch_length_fn=text_length, batch_bucket_boundaries=sorted(length_buckets),
                            max_batch_duration_secs=bucket_wait_secs)
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size, **batching)
        self.checkpoint = checkpoint
        self.spec = SPECS[checkpoint.name]
        self.device_request = device
        self.batch_size = batch_size
        self.max_tokens_per_batch = max_tokens_per_batch
        self.max_items_per_batch = max_items_per_batch
        self.sort_by_length = sort_by_length
        self.cpu_dtype = cpu_dtype
        self.quantize_int8 = quantize_int8
        self.cpu_threads = cpu_threads
        self.attn_implementation = attn_implementation
        self.length_buckets = list(length_buckets or [])
        self._model_copies_request = model_copies

    def _local_dir(self) -> str:
        if os.path.isdir(self.checkpoint.local_dir):
            return self.checkpoint.local_dir
        # A remote worker: fetch the same checkpoint (a hub id pinned to the resolved commit).
        pinned = self.checkpoint.revision if not self.checkpoint.revision.startswith("sha256:") else None
        return resolve(self.checkpoint.name, self.checkpoint.ref, revision=pinned).local_dir

    def _load_weights(self, local_dir: str):
        import torch
        from transformers import AutoModelForSequenceClassification

        attention = self.attn_implementation or "sdpa"
        try:
            return AutoModelForSequenceClassification.from_pretrained(
                local_dir, dtype=torch.float32, trust_remote_code=False, attn_implementation=attention)
        except (ValueError, ImportError) as exc:  # an architecture without SDPA support
            if self.attn_implementation:
                raise
            LOG.info("%s: %s attention unavailable (%s); using the default", self.spec.name, attention, exc)
            return AutoModelForSequenceClassification.from_pretrained(
                local_dir, dtype=torch.float32, trust_remote_code=False)

    def load_model(self) -> LoadedClassifier:
        import torch

        local_dir = self._local_dir()
        device = pick_device(self.device_request)
        if device == "cpu":
            threads = self.cpu_threads or worker_cores()
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        config = load_config_dict(local_dir)
        tokenizer = load_tokenizer(local_dir)
        if not getattr(tokenizer, "is_fast", False):
            raise RuntimeError(f"{self.spec.name}: {local_dir} has no fast tokenizer (tokenizer.json)")
        model = self._load_weights(local_dir)
        model.to(device).eval()
        autocast_dtype = autocast_dtype_for(device, self.cpu_dtype)
        if device == "cpu" and self.quantize_int8:
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
        max_length = min(int(tokenizer.model_max_length or 10**9), position_limit(config))
        uses_token_types = "token_type_ids" in inspect.signature(model.forward).parameters
        max_tokens, max_items = self._budget(device)
        LOG.info("loaded %s from %s on %s (autocast %s, int8 %s, threads %d)", self.spec.name, local_dir, device,
                 autocast_dtype, self.quantize_int8 and device == "cpu", torch.get_num_threads())
        return LoadedClassifier(model, tokenizer, build_head(self.spec, config), device, max_length,
                                autocast_dtype, uses_token_types,
                                name=self.spec.name, max_tokens=max_tokens, max_items=max_items,
                                sort_by_length=self.sort_by_length,
                                staging=PinnedStaging() if device == "cuda" else None,
                                pass_cost=PassCostModel(DEFAULT_OVERHEAD_TOKENS[device]),
                                onednn=not (device == "cpu" and autocast_dtype is None and not self.quantize_int8))

    def _budget(self, device: str) -> tuple[int, int]:
        return (self.max_tokens_per_batch or DEFAULT_MAX_TOKENS[device],
                self.max_items_per_batch or DEFAULT_MAX_ITEMS[device])

    @staticmethod
    def forward(loaded: LoadedClassifier, arrays: dict) -> np.ndarray:
        """One padded sub-batch (numpy int64 arrays) through the model; float32 logits."""
        import torch

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

    def run_inference(
        self,
        batch: Sequence[Optional[str]],
        model: LoadedClassifier,
        inference_args: Optional[dict[str, Any]] = None,
    ) -> Iterable[PredictionResult]:
        present = [i for i, text in enumerate(batch) if text]
        columns: list[Optional[dict | InferenceFailure]] = [None] * len(batch)
        namespace = self.get_metrics_namespace()
        if present:
            rows, stats = model.classify([batch[i] for i in present])
            for i, row in zip(present, rows):
                columns[i] = row
            for name, value in stats.items():
                if value:
                    Metrics.counter(namespace, name).inc(value)
        Metrics.counter(namespace, "empty_texts").inc(len(batch) - len(present))
        return [PredictionResult(text, cols, self.checkpoint.ref) for text, cols in zip(batch, columns)]

    def get_num_bytes(self, batch: Sequence[Optional[str]]) -> int:
        return sum(len(text.encode("utf-8")) for text in batch if text)

    def get_metrics_namespace(self) -> str:
        return f"classifier_{self.spec.name}"

    def share_model_across_processes(self) -> bool:
        """On CUDA, one model per machine (or model_copies), shared by its worker processes."""
        return pick_device(self.device_request) == "cuda"

    def model_copies(self) -> int:
        return self._model_copies_request or 1
