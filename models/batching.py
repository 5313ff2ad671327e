"""Sub-batches: which texts share a forward pass, and their padding.

Texts are sorted by token length and cut into consecutive sub-batches by a token budget (padded
size) and an item cap, choosing the cuts that minimise padded tokens plus a fixed cost per pass;
each sub-batch is padded only to its own longest member.
"""
from __future__ import annotations

import itertools
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
    that minimise the estimated cost: the padded tokens plus `overhead_tokens` (>= 0) per forward
    pass (what a pass costs beyond its tokens: launch and framework overhead, small-matrix
    inefficiency). So very short posts do not ride with posts several times longer unless
    they are few, and sub-batches are not cut so thin that per-pass overhead dominates.

    How: a dynamic program over the sorted lengths. best[j], the least cost of the first j items,
    is the least over the last sub-batch's start s of best[s] + overhead + (j - s) x longest, with
    longest = the j-th length and s no further back than the budgets allow (`size` items). Token
    lengths repeat a lot (a batch of 1,024 posts has ~100 distinct ones), so the program steps a
    run of equal lengths at a time, with a few numpy operations per run rather than per item.
    Within a run (items a..b-1, all of length L) a sub-batch ending at j either starts at or
    before a (the least best[s] - s x L over the reachable s <= a: suffix minima of one array),
    or inside the run, where the earliest reachable start is the cheapest (best[s] - s x L never
    decreases along a run, since overhead >= 0): that gives every best[j] of the run at once,
    including runs longer than `size`, whose tail repeats in full sub-batches of `size` items.
    The cuts are then read back from the end, taking at each cut the first minimum of the same
    costs (the largest sub-batch among equals), as the item-by-item program does."""
    overhead = DEFAULT_OVERHEAD_TOKENS["cpu"] if overhead_tokens is None else overhead_tokens
    if overhead < 0:
        raise ValueError(f"overhead_tokens must be >= 0, got {overhead}")
    count = len(lengths)
    if count == 0:
        return []
    given = np.asarray(lengths, dtype=np.int64)
    sorting = np.argsort(given, kind="stable")  # ties keep input order, as sorted() does
    longest = np.maximum(given[sorting], 1)  # what each item pads a sub-batch ending with it to
    order = sorting.tolist()
    # Costs are whole numbers, exact in float64; +inf stands for the positions before item 0 that
    # a window of `size` items may reach back to (a sub-batch never has more than `count` items).
    pad = count
    best = np.full(pad + count + 1, np.inf)  # best[pad + j]: least cost of the first j items
    best[pad] = 0.0
    position = np.arange(-pad, count + 1, dtype=np.float64)  # position[pad + j] = j

    def reach(end: int, length: int) -> tuple[slice, int]:
        size = max(1, min(max_items, max_tokens // length, count))  # items a sub-batch may hold
        return slice(pad + end - size, pad + end), size

    bounds = [0, *(np.flatnonzero(np.diff(longest)) + 1).tolist(), count]
    for a, b in zip(bounds, bounds[1:]):
        length = int(longest[a])
        window, size = reach(a + 1, length)  # the starts s <= a that a sub-batch ending in the run may have
        before = best[window] - length * position[window]  # best[s] - s x L
        run = slice(pad + a + 1, pad + b + 1)
        if b - a == 1:
            best[run] = overhead + (a + 1) * length + before.min()
            continue
        # least best[s] - s x L over the starts s <= a still reachable from the run's j-th end
        from_before = np.minimum.accumulate(before[::-1])[::-1][:b - a]
        least = np.minimum(from_before, overhead + from_before[0])  # or start at a + 1, in the run
        if b - a > size:  # beyond `size` items into the run: one more full sub-batch per `size` items
            step = np.arange(b - a)
            least = (step // size) * overhead + least[step % size]
        best[run] = overhead + length * position[run] + least
    batches: list[list[int]] = []
    end = count
    while end > 0:
        window, size = reach(end, int(longest[end - 1]))
        costs = best[window] + overhead + (end - position[window]) * int(longest[end - 1])
        start = end - size + int(np.argmin(costs))  # the first minimum: the largest sub-batch among equals
        batches.append(order[start:end])
        end = start
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
    """The sub-batch's inputs padded to its longest member, as int64 numpy arrays (lengths[i] is
    len(ids[i])): the tokens of all rows are written in one assignment through the attention mask,
    which selects the real-token cells in row order."""
    sizes = np.array([lengths[i] for i in indices], dtype=np.int64)
    mask = np.arange(sizes.max()) < sizes[:, None]
    arrays = {"input_ids": np.full(mask.shape, pad_id, dtype=np.int64),
              "attention_mask": mask.astype(np.int64)}
    arrays["input_ids"][mask] = np.fromiter(itertools.chain.from_iterable(ids[i] for i in indices), dtype=np.int64)
    if token_types is not None:
        arrays["token_type_ids"] = np.zeros(mask.shape, dtype=np.int64)
        arrays["token_type_ids"][mask] = np.fromiter(itertools.chain.from_iterable(token_types[i] for i in indices),
                                                     dtype=np.int64)
    return arrays
