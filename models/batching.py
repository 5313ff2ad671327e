"""Sub-batches: which texts share a forward pass, and their padding.

Texts are sorted by token length and cut into consecutive sub-batches by a token budget (padded
size) and an item cap, choosing the cuts that minimise padded tokens plus a fixed cost per pass;
each sub-batch is padded only to its own longest member.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_MAX_TOKENS = {"cpu": 8192, "cuda": 65536}
DEFAULT_MAX_ITEMS = {"cpu": 256, "cuda": 1024}
# What one forward pass costs beyond its tokens, in tokens (see plan_sub_batches).
DEFAULT_OVERHEAD_TOKENS = {"cpu": 128, "cuda": 2048}


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
