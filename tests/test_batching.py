"""plan_sub_batches: every text once, budgets respected, similar lengths together, and the cheapest
cut under its cost model (padded tokens plus a fixed cost per pass), the same plan as the plain
item-by-item dynamic program; plan_in_order: the unsorted baseline keeps input order within budgets;
pad_sub_batch: each row its text's tokens, then padding."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.batching import pad_sub_batch, plan_in_order, plan_sub_batches


def _padded(batch, lengths):
    return len(batch) * max(lengths[i] for i in batch)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 600), max_size=300), st.integers(1, 5000), st.integers(1, 128),
       st.integers(0, 500))
def test_plan_covers_every_index_once_within_budgets(lengths, max_tokens, max_items, overhead):
    plan = plan_sub_batches(lengths, max_tokens, max_items, overhead)
    assert sorted(i for batch in plan for i in batch) == list(range(len(lengths)))
    for batch in plan:
        assert 1 <= len(batch) <= max_items
        assert _padded(batch, lengths) <= max_tokens or len(batch) == 1  # one over-long text gets its own batch
    flat = [lengths[i] for batch in plan for i in batch]
    assert flat == sorted(flat)  # sub-batches are runs of the length order


def _brute_force_cost(sorted_lengths, max_tokens, max_items, overhead):
    """The least cost over every way of cutting the sorted lengths into runs."""
    n = len(sorted_lengths)
    best = None
    for mask in itertools.product((False, True), repeat=max(n - 1, 0)):
        cuts = [0] + [i + 1 for i, cut in enumerate(mask) if cut] + [n]
        cost = 0
        for a, b in zip(cuts, cuts[1:]):
            size, longest = b - a, sorted_lengths[b - 1]
            if size > max_items or (size > 1 and size * longest > max_tokens):
                break
            cost += overhead + size * longest
        else:
            best = cost if best is None else min(best, cost)
    return best


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 200), min_size=1, max_size=9), st.integers(1, 800), st.integers(1, 6),
       st.integers(0, 300))
def test_plan_is_the_cheapest_cut(lengths, max_tokens, max_items, overhead):
    plan = plan_sub_batches(lengths, max_tokens, max_items, overhead)
    cost = sum(overhead + _padded(batch, lengths) for batch in plan)
    assert cost == _brute_force_cost(sorted(lengths), max_tokens, max_items, overhead)


def test_plan_groups_by_length():
    lengths = [300, 5, 298, 6, 4, 301]
    plan = plan_sub_batches(lengths, max_tokens=620, max_items=8, overhead_tokens=64)
    assert plan == [[4, 1, 3], [2], [0, 5]]


def test_short_posts_do_not_ride_with_long_ones_but_are_not_cut_thin():
    lengths = [8] * 100 + [60] * 10  # a batch of short posts and a few long ones
    plan = plan_sub_batches(lengths, max_tokens=100_000, max_items=1000, overhead_tokens=64)
    assert plan == [list(range(100)), list(range(100, 110))]
    nearly_equal = [10, 11] * 50  # padding 100 tokens at most: cheaper than a second pass
    assert len(plan_sub_batches(nearly_equal, 100_000, 1000, overhead_tokens=64)) == 1
    assert len(plan_sub_batches(nearly_equal, 100_000, 1000, overhead_tokens=0)) == 2


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 600), max_size=200), st.integers(1, 5000), st.integers(1, 64))
def test_plan_in_order_keeps_order_within_budgets(lengths, max_tokens, max_items):
    plan = plan_in_order(lengths, max_tokens, max_items)
    assert [i for batch in plan for i in batch] == list(range(len(lengths)))
    for batch in plan:
        assert 1 <= len(batch) <= max_items
        assert _padded(batch, lengths) <= max_tokens or len(batch) == 1


def reference_plan(lengths, max_tokens, max_items, overhead):
    """The planner before it stepped a run of equal lengths at a time: the dynamic program item by
    item, each step a numpy argmin over every start the budgets allow (first minimum)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    count = len(order)
    if count == 0:
        return []
    ordered = np.array([lengths[i] for i in order], dtype=np.int64)
    best = np.zeros(count + 1, dtype=np.float64)
    start = np.zeros(count + 1, dtype=np.int64)
    for end in range(1, count + 1):
        longest = max(int(ordered[end - 1]), 1)
        size = max(1, min(max_items, max_tokens // longest))
        first = max(0, end - size)
        starts = np.arange(first, end)
        costs = best[first:end] + overhead + (end - starts) * longest
        pick = int(np.argmin(costs))
        best[end] = costs[pick]
        start[end] = first + pick
    batches = []
    end = count
    while end > 0:
        batches.append(order[int(start[end]):end])
        end = int(start[end])
    batches.reverse()
    return batches


@st.composite
def _token_lengths(draw):
    """Up to 600 lengths of 0..600 tokens drawn from a few distinct values (a batch of posts
    repeats its lengths a lot), sometimes with a tail of lengths drawn freely."""
    distinct = draw(st.lists(st.integers(0, 600), min_size=1, max_size=120))
    count = draw(st.integers(0, 600))
    repeated = draw(st.lists(st.sampled_from(distinct), min_size=count, max_size=count))
    return repeated + draw(st.lists(st.integers(0, 600), max_size=draw(st.sampled_from([0, 0, 30, 200]))))


@settings(max_examples=300, deadline=None)
@given(_token_lengths(), st.one_of(st.integers(1, 2000), st.integers(2000, 70_000)),
       st.one_of(st.integers(1, 16), st.integers(16, 1100)), st.one_of(st.just(0), st.integers(0, 3000)))
def test_plan_is_the_item_by_item_programs_plan(lengths, max_tokens, max_items, overhead):
    plan = plan_sub_batches(lengths, max_tokens, max_items, overhead)
    reference = reference_plan(lengths, max_tokens, max_items, overhead)
    cost = sum(overhead + len(batch) * max(1, *(lengths[i] for i in batch)) for batch in plan)
    assert cost == sum(overhead + len(batch) * max(1, *(lengths[i] for i in batch)) for batch in reference)
    assert sorted(i for batch in plan for i in batch) == list(range(len(lengths)))
    for batch in plan:
        assert 1 <= len(batch) <= max_items
        assert _padded(batch, lengths) <= max_tokens or len(batch) == 1
    assert [i for batch in plan for i in batch] == sorted(range(len(lengths)), key=lambda i: lengths[i])
    assert plan == reference  # the same tie-breaking: the largest sub-batch among equally cheap ones


def test_negative_overhead_is_refused():
    with pytest.raises(ValueError, match="overhead_tokens"):
        plan_sub_batches([3, 4, 5], 100, 10, overhead_tokens=-1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(0, 50_000), max_size=40), min_size=1, max_size=30), st.data(),
       st.booleans(), st.integers(0, 3))
def test_pad_sub_batch_rows_are_the_texts_then_padding(ids, data, with_types, pad_id):
    indices = data.draw(st.lists(st.sampled_from(range(len(ids))), min_size=1, max_size=12, unique=True))
    types = [[(i + j) % 2 for j in range(len(x))] for i, x in enumerate(ids)] if with_types else None
    arrays = pad_sub_batch(ids, types, [len(x) for x in ids], indices, pad_id)
    width = max(len(ids[i]) for i in indices)
    assert sorted(arrays) == sorted(["input_ids", "attention_mask"] + (["token_type_ids"] if with_types else []))
    for name, array in arrays.items():
        assert array.dtype == np.int64 and array.shape == (len(indices), width)
    for row, i in enumerate(indices):
        n = len(ids[i])
        assert arrays["input_ids"][row].tolist() == ids[i] + [pad_id] * (width - n)
        assert arrays["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        if with_types:
            assert arrays["token_type_ids"][row].tolist() == types[i] + [0] * (width - n)
