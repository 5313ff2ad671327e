"""plan_sub_batches: every text once, budgets respected, similar lengths together, and the cheapest
cut under its cost model (padded tokens plus a fixed cost per pass); plan_in_order: the unsorted baseline keeps input order within budgets."""
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from models.batching import plan_in_order, plan_sub_batches


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
