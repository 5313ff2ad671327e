"""plan_sub_batches: every text once, budgets respected, similar lengths together."""
from hypothesis import given, settings
from hypothesis import strategies as st

from models.handler import plan_sub_batches


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 600), max_size=300), st.integers(1, 5000), st.integers(1, 128))
def test_plan_covers_every_index_once_within_budgets(lengths, max_tokens, max_items):
    plan = plan_sub_batches(lengths, max_tokens, max_items)
    assert sorted(i for batch in plan for i in batch) == list(range(len(lengths)))
    for batch in plan:
        assert 1 <= len(batch) <= max_items
        padded = len(batch) * max(lengths[i] for i in batch)
        assert padded <= max_tokens or len(batch) == 1  # one over-long text still gets its own batch


def test_plan_groups_by_length():
    lengths = [300, 5, 298, 6, 4, 301]
    plan = plan_sub_batches(lengths, max_tokens=620, max_items=8)
    assert plan == [[4, 1, 3], [2, 0], [5]]
