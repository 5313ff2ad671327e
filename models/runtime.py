"""Where and how the models run: device choice, worker cores, autocast dtype, pinned host
buffers for CUDA copies, handing freed memory back, and the position limit of a checkpoint."""
from __future__ import annotations

import os
from typing import Any

import numpy as np


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


def autocast_dtype_for(device: str, cpu_precision: str = "fp32"):
    """The autocast dtype of a device: bf16 on a CUDA GPU that has it, else fp16; on CPU
    bf16 when asked for, else None (plain fp32)."""
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_precision == "bf16" else None


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


def token_limit(tokenizer, config: dict) -> int:
    """Tokens per text a model takes: the tokenizer's limit and its position embeddings'."""
    return min(int(tokenizer.model_max_length or 10**9), position_limit(config))


def clean_token_limit(configs) -> int:
    """How many tokens' worth of each text a run cleans (transforms.cleaning.clean_for_models):
    the most any of its models' position embeddings take."""
    return max(position_limit(config) for config in configs)


def position_limit(config: dict) -> int:
    """How many tokens the model's position embeddings allow."""
    limit = int(config.get("max_position_embeddings") or 512)
    if config.get("model_type") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        pad = config.get("pad_token_id")
        limit -= (1 if pad is None else int(pad)) + 1  # positions start after the padding index
    return limit
