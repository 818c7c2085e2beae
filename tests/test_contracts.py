"""The warehouse table contracts of DESIGN §4 on a full zero-configuration demo run."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

CONTRACT = {
    "column_profile": {
        "space",
        "column",
        "detected_type",
        "role",
        "null_fraction",
        "distinct_count",
        "excluded",
        "reason",
        "unparsed_count",
        "unparsed_examples",
        "evidence",
    },
    "join_report": {
        "parent",
        "child",
        "foreign_key",
        "coverage",
        "orphans",
        "null_keys",
        "parent_key_type",
        "foreign_key_type",
        "declared_cardinality",
        "observed_cardinality",
        "kl_shift",
        "kl_column",
        "status",
        "message",
        "parent_coverage",
        "orphan_examples",
        "null_key_examples",
        "duplicated_parent_keys",
        "excluded_by_as_of",
    },
    "training_runs": {
        "run_id",
        "space",
        "version",
        "started_at",
        "finished_at",
        "epochs",
        "losses",
        "detected_failures",
        "corrective_actions",
        "timeline_path",
    },
    "mutual_information": {"space", "column", "bits"},
}
EMBEDDING_COLUMNS = {"embedding", "embedding_3d", "space_version", "embedded_at"}
PREDICTION_COLUMNS = {
    "prediction",
    "probability",
    "probabilities",
    "interval_low",
    "interval_high",
    "confidence",
    "ood_sigma",
    "warnings",
    "feature_importance",
    "split",
    "predictor_version",
    "space_version",
    "predicted_at",
}
SPACES = {
    "customers": "customer_id",
    "orders": "order_id",
    "order_items": "item_id",
    "products": "product_id",
    "support_tickets": "ticket_id",
    "regions": "region_id",
}


@pytest.fixture(scope="module")
def con(hierarchical_run):
    connection = duckdb.connect(str(hierarchical_run.warehouse), read_only=True)
    yield connection
    connection.close()


def columns_of(con, table: str) -> dict[str, str]:
    rows = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = 'ml' and table_name = ?",
        [table],
    ).fetchall()
    return dict(rows)


@pytest.mark.parametrize("table", sorted(CONTRACT))
def test_report_tables_have_contract_columns(con, table):
    assert CONTRACT[table] <= set(columns_of(con, table))
    assert con.execute(f"select count(*) from ml.{table}").fetchone()[0] > 0


@pytest.mark.parametrize("space", sorted(SPACES))
def test_one_embedding_per_row(con, space):
    key = SPACES[space]
    columns = columns_of(con, f"{space}_embeddings")
    assert EMBEDDING_COLUMNS | {key} <= set(columns)
    source_type = con.execute(
        "select data_type from information_schema.columns where table_name = ? and column_name = ?",
        [f"stg_{space}", key],
    ).fetchone()[0]
    assert columns[key] == source_type
    assert columns["embedding_3d"] == "FLOAT[3]"
    assert columns["embedding"].startswith("FLOAT[")
    rows, distinct, source = con.execute(
        f"select count(*), count(distinct {key}), (select count(*) from main.stg_{space}) "
        f"from ml.{space}_embeddings"
    ).fetchone()
    assert rows == distinct == source
    vectors = np.array(
        [r[0] for r in con.execute(f"select embedding from ml.{space}_embeddings").fetchall()]
    )
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    three = np.array(
        [r[0] for r in con.execute(f"select embedding_3d from ml.{space}_embeddings").fetchall()]
    )
    assert np.allclose(np.linalg.norm(three, axis=1), 1, atol=1e-4)


def test_predictions_cover_every_row_including_unlabelled(con):
    assert PREDICTION_COLUMNS | {"customer_id"} <= set(
        columns_of(con, "customers__churned_predictions")
    )
    missing = con.execute(
        "select count(*) from main.stg_customers c left join ml.customers__churned_predictions p "
        "using (customer_id) where p.customer_id is null"
    ).fetchone()[0]
    assert missing == 0
    unlabelled = con.execute(
        "select count(*) from main.stg_customers c join ml.customers__churned_predictions p "
        "using (customer_id) where c.churned is null and p.prediction is not null"
    ).fetchone()[0]
    assert unlabelled > 0
    bad = con.execute(
        "select count(*) from ml.customers__churned_predictions "
        "where abs(probability - probabilities[cast(prediction as varchar)]) > 1e-9 "
        "or abs(probabilities['true'] + probabilities['false'] - 1) > 1e-6 "
        "or prediction is null or confidence not between 0 and 1"
    ).fetchone()[0]
    assert bad == 0
    # churned is BOOLEAN in the warehouse: so are its predictions
    assert columns_of(con, "customers__churned_predictions")["prediction"] == "BOOLEAN"


def test_feature_importance_names_the_child_tables(con):
    keys = con.execute(
        "select map_keys(feature_importance) from ml.customers__churned_predictions limit 1"
    ).fetchone()[0]
    # the tree model reads the parent's columns and each child table's statistics by name;
    # what it reads through the embedding (e.g. the region reference) counts as `embedding`
    assert {"orders", "support_tickets", "plan"} <= set(keys)
    chosen = con.execute(
        "select metrics->>'chosen' from ml.training_runs where kind = 'predictor' "
        "and space = 'customers' order by finished_at desc limit 1"
    ).fetchone()[0]
    assert ("embedding" in keys) == (chosen != "gbdt_aggregates")


def test_profile_records_roles_and_exclusions(con):
    roles = dict(
        con.execute(
            "select \"column\", role from ml.column_profile where space = 'customers'"
        ).fetchall()
    )
    assert roles["customer_id"] == "key" and roles["churned"] == "target"
    assert roles["region_id"] == "reference_key"
    fk = con.execute(
        "select role, excluded from ml.column_profile where space = 'orders' "
        "and \"column\" = 'customer_id'"
    ).fetchone()
    assert fk == ("foreign_key", True)
    types = dict(
        con.execute(
            "select \"column\", detected_type from ml.column_profile where space = 'customers'"
        ).fetchall()
    )
    assert types["email"] == "email" and types["notes"] == "text"
    assert types["signup_date"] == "timestamp" and types["plan"] == "category"


def test_join_report_has_every_relationship(con):
    rows = con.execute("select parent, child, status, coverage from ml.join_report").fetchall()
    links = {(p, c) for p, c, _, _ in rows}
    assert links == {
        ("customers", "orders"),
        ("customers", "support_tickets"),
        ("regions", "customers"),
        ("orders", "order_items"),
        ("products", "order_items"),
    }
    assert all(status == "ok" and coverage == 1.0 for _, _, status, coverage in rows)
    # Not every customer opened a ticket, and those who did are not different in their own
    # columns (the demo draws them independently; only churn depends on tickets).
    parent_coverage, kl, column = con.execute(
        "select parent_coverage, kl_shift, kl_column from ml.join_report "
        "where child = 'support_tickets'"
    ).fetchone()
    assert 0.05 < parent_coverage < 0.95 and kl is not None and 0 <= kl < 1.0 and column


def test_ordered_labels_are_ordinal(con):
    (detected,) = con.execute(
        "select detected_type from ml.column_profile where space = 'support_tickets' "
        "and \"column\" = 'priority'"
    ).fetchone()
    assert detected == "ordinal"


def test_text_values_are_embedded_once(con):
    total, distinct = con.execute(
        "select count(*), count(distinct text) from ml.text_embedding_cache"
    ).fetchone()
    assert total == distinct > 0


def test_training_runs_and_artifacts_without_pickle(con, hierarchical_run):
    kinds = con.execute("select kind, count(*) from ml.training_runs group by kind").fetchall()
    assert dict(kinds) == {"space": 6, "predictor": 1}
    artifacts = Path(hierarchical_run.artifacts)
    models = [
        p
        for p in artifacts.rglob("*")
        if p.is_file() and p.parts[len(artifacts.parts)] != "quality"
    ]
    # the neighbour index: faiss's own binary format and the keys as Arrow IPC, no pickle
    allowed = {".safetensors", ".json", ".parquet", ".faiss", ".arrow", ""}
    assert models and {p.suffix for p in models} <= allowed
    assert {p.name for p in models if not p.suffix} == {"CURRENT"}  # the model set pointers
    everything = [p for p in artifacts.rglob("*") if p.is_file()]
    assert not [p for p in everything if p.suffix in (".pkl", ".pickle", ".pt", ".pth", ".joblib")]
