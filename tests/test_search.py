"""Nearest-row search on the demo run, and its explanation; search by a described row (a
partial record, a text) on planted members whose city and hobby are known."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipeline import runner
from pipeline.errors import PipelineError
from pipeline.search import nearest, nearest_to_record, nearest_to_text
from pipeline.spec import Spec
from pipeline.warehouse.connection import Warehouse
from tests.conftest import FAST_TRAINING, write_spec, write_tables


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


TOPICS = {
    "cycling": [
        "rides a mountain bike on forest trails every weekend",
        "road cycling club member, long rides on Sundays",
        "commutes by bicycle and races in amateur cycling events",
    ],
    "cooking": [
        "bakes sourdough bread and cooks italian dinners",
        "loves cooking spicy curries for friends",
        "collects recipes and tries new pastry techniques",
    ],
    "music": [
        "plays jazz piano in a small band",
        "collects vinyl records and goes to concerts",
        "sings in a choir and learns the violin",
    ],
}
CITIES = ["Lyon", "Paris", "Nantes", "Lille"]
NOTES = ["prefers email", "call after six", "new address last spring", "paid by card"]


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> Spec:
    """300 members: a city (4) independent of the hobby their bio describes (3 topics)."""
    folder = tmp_path_factory.mktemp("members")
    rng = np.random.default_rng(0)
    topics = rng.choice(list(TOPICS), 300)
    bios = [f"{TOPICS[t][i % 3]}, member {i}" for i, t in enumerate(topics)]
    write_tables(
        folder / "w.duckdb",
        {
            "members": pa.table(
                {
                    "member_id": pa.array(range(300), pa.int32()),
                    "city": pa.array(rng.choice(CITIES, 300)),
                    "age": rng.integers(20, 70, 300).astype(np.float64),
                    "bio": pa.array(bios),
                    "note": pa.array(
                        [f"service note {i}: {NOTES[i % 4]}, followed up" for i in range(300)]
                    ),
                    "topic": pa.array(topics),
                }
            )
        },
    )
    spec = write_spec(
        folder / "spaces.yaml",
        {
            "warehouse": "w.duckdb",
            "training": FAST_TRAINING,
            "spaces": {
                "members": {
                    "table": "main.members",
                    "key": "member_id",
                    "columns": {"topic": {"active": False}},
                }
            },
        },
    )
    runner.run(spec, progress=False)
    return spec


def _members(spec: Spec, found, column: str) -> list:
    with Warehouse.of(spec).connect(read_only=True) as con:
        values = dict(con.execute(f"select member_id, {column} from main.members").fetchall())
    return [values[n.key[0]] for n in found]


def test_search_by_partial_record_finds_the_described_rows(members):
    found = nearest_to_record(members, "members", {"city": "Lyon"}, k=10)
    assert len(found) == 10
    assert _members(members, found, "city").count("Lyon") >= 9
    again = nearest_to_record(members, "members", {"city": "Lyon"}, k=10)
    assert [n.key for n in again] == [n.key for n in found]  # deterministic
    described = nearest_to_record(members, "members", {"city": "Paris", "age": 66}, k=5)
    ages = _members(members, described, "age")
    assert _members(members, described, "city").count("Paris") >= 4 and np.mean(ages) > 50
    # the whole row given: the row itself comes first
    with Warehouse.of(members).connect(read_only=True) as con:
        names = ["city", "age", "bio", "note"]
        row = con.execute(f"select {', '.join(names)} from main.members where member_id = 7")
        whole_row = dict(zip(names, row.fetchone(), strict=True))
    whole = nearest_to_record(members, "members", whole_row, k=1)
    assert whole[0].key == (7,) and whole[0].similarity > 0.99


def test_search_by_text_finds_the_rows_that_read_like_it(members):
    found = nearest_to_text(members, "members", "I ride my bike on mountain trails", k=10)
    assert _members(members, found, "topic").count("cycling") >= 9
    found = nearest_to_text(members, "members", "jazz concerts and playing the piano", k=10)
    assert _members(members, found, "topic").count("music") >= 9
    explained = nearest_to_text(members, "members", "homemade bread", k=3, explain=True)
    assert _members(members, explained, "topic").count("cooking") == 3
    for neighbour in explained:  # per text column: the bio is what reads like it
        assert set(neighbour.explanation) == {"bio", "note"}
        assert neighbour.explanation["bio"] == pytest.approx(neighbour.similarity)
        assert neighbour.explanation["bio"] > neighbour.explanation["note"] + 0.2
    described = nearest_to_record(members, "members", {"bio": "homemade bread"}, k=3)
    assert len(described) == 3
    with Warehouse.of(members).connect(read_only=True) as con:
        cached = con.execute(
            "select count(*) from ml.text_embedding_cache where text = 'homemade bread'"
        ).fetchone()[0]
    assert cached == 0  # a record's new text is embedded, not kept (read-only search)


def test_search_by_description_says_what_is_wrong(members):
    with pytest.raises(PipelineError, match="space members: the record names town, which"):
        nearest_to_record(members, "members", {"town": "Lyon"})
    with pytest.raises(PipelineError, match="the record's values do not fit"):
        nearest_to_record(members, "members", {"age": "old"})
    with pytest.raises(PipelineError, match="must be a JSON object"):
        nearest_to_record(members, "members", {})
    with pytest.raises(PipelineError, match="unknown space people"):
        nearest_to_text(members, "people", "x")
