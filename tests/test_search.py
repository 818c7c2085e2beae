"""Nearest-row search on the demo run, and its explanation."""

from __future__ import annotations

import pytest

from pipeline.errors import PipelineError
from pipeline.search import nearest


def test_nearest_customers_with_explanation(hierarchical_run):
    found = nearest(hierarchical_run, "customers", ["12"], k=4, explain=True)
    assert len(found) == 4
    assert all(n.key != (12,) for n in found)
    similarities = [n.similarity for n in found]
    assert similarities == sorted(similarities, reverse=True)
    assert {"orders", "support_tickets", "plan"} <= set(found[0].explanation)


def test_unknown_key_and_space(hierarchical_run):
    with pytest.raises(PipelineError, match="no row of ml.customers_embeddings has key 999999"):
        nearest(hierarchical_run, "customers", ["999999"])
    with pytest.raises(PipelineError, match="unknown space custmers"):
        nearest(hierarchical_run, "custmers", ["1"])
