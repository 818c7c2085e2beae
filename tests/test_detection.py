"""Column type detection on a small messy DuckDB table: detected types, junk excluded with a
reason, values that do not parse counted, spec overrides, and the `ml.column_profile` rows."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from pipeline.errors import SpecError
from pipeline.spec import parse_spec
from pipeline.understanding.detection import SAMPLE_ROWS
from pipeline.understanding.profiling import ColumnProfile, profile_space, profiles_table

N_ROWS = 200
FIRST_NAMES = (
    "Alice", "Bob", "Maria", "José", "Chen", "Aisha", "Liam", "Olga", "Seán", "Priya",
    "Kofi", "Yuki", "Emma", "Noah", "Fatima", "Lucas", "Ingrid", "Omar", "Sofia", "Ravi",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Garcia", "O'Brien", "Núñez", "Wang", "Okafor", "Müller", "Rossi", "Kowalski",
    "Tanaka", "Silva", "Dubois", "Jensen", "Khan", "Novak", "Murphy", "Cohen", "Larsen",
    "Haddad", "Ivanova",
)  # fmt: skip
NOTES = (
    "the customer asked for a refund after a late delivery",
    "great product, will buy again soon",
    "shipping took far too long this time",
    "package arrived damaged and support never replied",
)


def mixed_value(i: int, rng: random.Random) -> str | None:
    """Numbers as strings, with a word every tenth row, blanks and NULLs."""
    if i % 10 == 3:
        return "thirty"
    if i % 10 == 5:
        return "  "
    if i % 10 == 7:
        return None
    return str(rng.choice([25, 999, 12.5, 40]))


def phone_value(rng: random.Random) -> str:
    return rng.choice(
        [
            f"+1 ({rng.randint(200, 999)}) 555-{rng.randint(1000, 9999)}",
            f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
            f"(415) 555-{rng.randint(1000, 9999)}",
        ]
    )


def snowflake_id(i: int, rng: random.Random) -> int:
    milliseconds = 1_700_000_000_000 + 997 * i - 1_288_834_974_657
    return (milliseconds << 22) | (rng.randrange(32) << 12) | rng.randrange(4096)


def messy_rows(rng: random.Random) -> list[dict]:
    names = rng.sample([f"{f} {last}" for f in FIRST_NAMES for last in LAST_NAMES], N_ROWS)
    return [
        {
            "id": i,
            "amount": f"{rng.uniform(1, 500):.2f}" if i % 7 else f" {rng.randint(1, 500)} ",
            "mixed": mixed_value(i, rng),
            "flag": rng.choice(["yes", "no", "Yes"]),
            "yn": rng.choice(["Y", "N"]),
            "zero_one": rng.choice([0, 1]),
            "level": rng.choice(["low", "medium", "high"]),
            "signup_us": f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/2023",
            "signup_iso": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            + (" " if i % 9 == 0 else ""),
            "contact": f"{rng.choice(FIRST_NAMES).lower()}.{i}@"
            + rng.choice(["gmail.com", "acme.io", "corp.de", "yahoo.com"]),
            "website": f"https://www.{rng.choice(['acme', 'shop', 'blog'])}.com/p/"
            f"{rng.choice(['shoes', 'hats'])}?q={i}",
            "company_domain": rng.choice(["acme.com", "example.org", "shop.co.uk", "Globex.net"]),
            "phone": phone_value(rng),
            "payload": json.dumps(
                {
                    "total": round(rng.uniform(0, 100), 2),
                    "shipping": {"city": rng.choice(["Oslo", "Lima"]), "days": rng.randint(1, 9)},
                }
            ),
            "embedding": [rng.random() for _ in range(4)],
            "embedding_str": json.dumps([round(rng.random(), 4) for _ in range(3)]),
            "notes": rng.choice(NOTES),
            "plan": rng.choice(["free", "pro", "basic"]),
            "const": "x",
            "empty": None,
            "session": str(uuid.UUID(int=rng.getrandbits(128))),
            "device": str(uuid.UUID(int=rng.getrandbits(128))),
            "digest": f"{rng.getrandbits(160):040x}",
            "sku": f"SKU-{i + 1:05d}",
            "snowflake": snowflake_id(i, rng),
            "_airbyte_raw_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "customer_name": names[i],
            "price": round(rng.uniform(1, 1000), 2) + i * 1e-4,
        }
        for i in range(N_ROWS)
    ]


def spec_for(warehouse: Path, columns: dict | None = None):
    space = {"table": "main.t", "key": "id", "columns": columns or {}}
    return parse_spec({"warehouse": str(warehouse), "spaces": {"t": space}})


def profile(warehouse: Path, columns: dict | None = None) -> dict[str, ColumnProfile]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return {p.column: p for p in profile_space(con, spec_for(warehouse, columns), "t")}
    finally:
        con.close()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("detection") / "warehouse.duckdb"
    source = pa.Table.from_pylist(messy_rows(random.Random(7)))
    empty = source.schema.get_field_index("empty")
    source = source.set_column(empty, "empty", pa.nulls(N_ROWS, pa.string()))
    con = duckdb.connect(str(path))
    con.register("source", source)
    con.execute(
        "create table main.t as select * replace (cast(device as uuid) as device) from source"
    )
    con.close()
    return path


@pytest.fixture(scope="module")
def profiles(warehouse: Path) -> dict[str, ColumnProfile]:
    return profile(warehouse)


def test_warehouse_types_are_as_built(profiles: dict[str, ColumnProfile]) -> None:
    assert profiles["embedding"].warehouse_type == "DOUBLE[]"
    assert profiles["device"].warehouse_type == "UUID"
    assert profiles["zero_one"].warehouse_type == profiles["snowflake"].warehouse_type == "BIGINT"
    assert profiles["price"].warehouse_type == "DOUBLE"
    assert profiles["empty"].warehouse_type == "VARCHAR"


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("amount", "scalar"),
        ("mixed", "scalar"),
        ("flag", "boolean"),
        ("yn", "boolean"),
        ("zero_one", "boolean"),
        ("level", "ordinal"),
        ("signup_us", "timestamp"),
        ("signup_iso", "timestamp"),
        ("contact", "email"),
        ("website", "url"),
        ("company_domain", "domain"),
        ("phone", "phone"),
        ("payload", "json"),
        ("embedding", "vector"),
        ("embedding_str", "vector"),
        ("notes", "text"),
        ("plan", "category"),
        ("customer_name", "category"),
        ("price", "scalar"),
    ],
)
def test_detected_type(profiles: dict[str, ColumnProfile], column: str, expected: str) -> None:
    p = profiles[column]
    assert (p.detected_type, p.excluded) == (expected, False), p.reason
    assert p.role == "input"
    if column != "mixed":
        assert p.unparsed_count == 0, p.reason


def test_mixed_column_counts_what_does_not_parse(profiles: dict[str, ColumnProfile]) -> None:
    mixed = profiles["mixed"]
    assert mixed.unparsed_count == N_ROWS // 10  # 'thirty'; blanks and NULLs are just missing
    assert mixed.unparsed_examples == ["thirty"]
    assert mixed.reason.startswith("mixed: 88% of values look like scalar")
    assert "20 value(s) do not parse" in mixed.reason
    assert mixed.null_fraction == pytest.approx(0.2)


def test_padded_values_parse(profiles: dict[str, ColumnProfile]) -> None:
    assert profiles["amount"].evidence["shares"]["scalar"] == 1.0
    assert profiles["signup_iso"].evidence["shares"]["timestamp"] == 1.0


@pytest.mark.parametrize(
    ("column", "detected", "reason"),
    [
        ("empty", "category", "all values are NULL"),
        ("const", "category", "constant (one distinct value)"),
        ("session", "id", "id-like (score 0.65 from uniqueness, pattern)"),
        ("device", "id", "UUID column (an identifier, not content)"),
        ("digest", "id", "id-like (score 0.65 from uniqueness, pattern)"),
        ("sku", "id", "id-like"),
        ("snowflake", "id", "id-like (score 0.65 from uniqueness, pattern)"),
        ("_airbyte_raw_id", "id", "internal column (loader or ETL metadata)"),
        ("id", "scalar", "key column (structure, not an input)"),
    ],
)
def test_excluded_with_reason(
    profiles: dict[str, ColumnProfile], column: str, detected: str, reason: str
) -> None:
    p = profiles[column]
    assert p.excluded
    assert p.detected_type == detected
    assert p.reason.startswith(reason)


def test_sku_codes_need_the_semantic_id_check(profiles: dict[str, ColumnProfile]) -> None:
    score = profiles["sku"].evidence["id_score"]
    assert score["uniqueness"] == 1.0 and score["pattern"] == 0.5 and score["name"] == 0.0
    assert score["semantic"] is not None and score["semantic"] > 0.5
    assert profiles["sku"].evidence["type_if_kept"] == "category"
    assert profiles["session"].evidence["id_score"]["semantic"] is None  # decided without it


def test_unique_person_names_are_not_ids(profiles: dict[str, ColumnProfile]) -> None:
    score = profiles["customer_name"].evidence["id_score"]
    assert score["uniqueness"] == 1.0
    assert score["score"] < 0.6
    assert profiles["customer_name"].distinct_count == N_ROWS
    assert profiles["price"].distinct_count == N_ROWS


def test_spec_overrides_win_over_detection(warehouse: Path) -> None:
    overridden = profile(
        warehouse, {"sku": {"active": True}, "amount": {"type": "category"}, "plan": {}}
    )
    sku = overridden["sku"]
    assert (sku.detected_type, sku.excluded) == ("category", False)
    assert sku.reason.startswith("active: true in spec (detected: id-like")
    amount = overridden["amount"]
    assert (amount.detected_type, amount.excluded) == ("category", False)
    assert amount.reason == "type declared in spec"
    assert amount.evidence["detected"] == "scalar"
    assert overridden["plan"].detected_type == "category"


def test_wrongly_declared_type_names_the_spec_place(warehouse: Path) -> None:
    with pytest.raises(SpecError) as error:
        profile(warehouse, {"plan": {"type": "scalar"}})
    assert error.value.place == "spaces.t.columns.plan.type"
    assert "200 of 200 values do not parse as scalar" in error.value.problem


def test_column_profile_evidence_is_json(profiles: dict[str, ColumnProfile]) -> None:
    table = profiles_table(list(profiles.values()))
    assert table.schema.field("evidence").type == pa.string()
    assert table.num_rows == len(profiles)
    rows = {r["column"]: r for r in table.to_pylist()}
    for column, row in rows.items():
        evidence = json.loads(row["evidence"])
        assert evidence == profiles[column].evidence, column
    assert json.loads(rows["sku"]["evidence"])["id_score"]["semantic"] > 0.5
    con = duckdb.connect()
    con.register("column_profile", table)
    valid = con.execute("select bool_and(json_valid(evidence)) from column_profile").fetchone()
    assert valid == (True,)


def test_iso_dates_with_sentinels_are_timestamps_not_phones(tmp_path: Path) -> None:
    path = tmp_path / "dates.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "create table main.t as select range as id, case when range % 10 < 3 then '9999-12-31' "
        "else strftime(date '2024-01-01' + (range % 300)::int, '%Y-%m-%d') end as valid_to "
        f"from range({N_ROWS})"
    )
    con.close()
    valid_to = profile(path)["valid_to"]
    assert valid_to.detected_type == "timestamp", valid_to.reason
    assert valid_to.evidence["shares"]["phone"] == 0.0
    assert valid_to.unparsed_count == 60
    assert valid_to.unparsed_examples == ["9999-12-31"]


def test_sparse_columns_of_a_sampled_table_are_measured(tmp_path: Path) -> None:
    """Values only in rows outside the detection sample are measured on the whole table."""
    path = tmp_path / "large.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "create table main.t as select range as id, null::varchar as contact, "
        f"null::bigint as churned from range({SAMPLE_ROWS + 10_000})"
    )
    unsampled = [
        r[0] for r in con.execute("select id from t order by hash(id) desc limit 3").fetchall()
    ]
    emails = ["ann@gmail.com", "bo@acme.io", "cy@corp.de"]
    for key, email, churned in zip(unsampled, emails, [0, 1, 1], strict=True):
        con.execute("update t set contact = ?, churned = ? where id = ?", [email, churned, key])
    con.close()
    profiles = profile(path)
    assert profiles["contact"].detected_type == "email", profiles["contact"].reason
    assert profiles["churned"].detected_type == "boolean", profiles["churned"].reason
    assert not profiles["contact"].excluded and not profiles["churned"].excluded
