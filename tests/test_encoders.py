"""Every registered column type: codec fit/transform/state round trip and its encoder, then the
behaviour each type promises (free mail, URL parts, phone areas, ordinal order, ...)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from pipeline.encoders import (
    LEGACY_TEXT_MODEL,
    build_encoder,
    codec_from_state,
    column_type,
    fit_codec,
    stale_text_codecs,
    type_names,
)
from pipeline.encoders.base import Codec
from pipeline.encoders.text_vectors import MODEL_NAME, TEXT_DIM

DAY = 86_400.0
EPOCH_2024 = 1_704_067_200.0  # 2024-01-01 00:00:00 UTC


@dataclass(frozen=True)
class Case:
    """Raw values of one type as the model reads them: `good` parse, `bad` (NULL and one
    value that does not parse) are read as missing."""

    good: list
    bad: list
    unseen: list = field(default_factory=list)
    """Values that are missing only on new data: not fitted on, given to transform."""

    def raw(self) -> list | np.ndarray:
        return self._as_read(self.good + self.bad + self.unseen)

    def fitted(self) -> list | np.ndarray:
        return self._as_read(self.good + self.bad)

    def _as_read(self, values: list) -> list | np.ndarray:
        if self.numbers:
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        return values

    @property
    def numbers(self) -> bool:
        """Number types are read as float arrays, NULL as NaN (as `pipeline.spaces.reads` does)."""
        return all(v is None or isinstance(v, float) for v in self.good + self.bad)

    @property
    def present(self) -> list[bool]:
        return [True] * len(self.good) + [False] * (len(self.bad) + len(self.unseen))


CASES: dict[str, Case] = {
    "scalar": Case(good=[12.5, 0.0, -3.0, 1e6, 42.0], bad=[None, math.inf]),
    "timestamp": Case(
        good=[EPOCH_2024, EPOCH_2024 + 37 * DAY, -2.2e9, 7.2e9, EPOCH_2024 + 0.5 * DAY],
        bad=[None, -math.inf],
    ),
    "boolean": Case(good=["yes", "N", "true", "0", True, 1], bad=[None, "maybe"]),
    # Labels and text have no unparseable value: a blank one is read as NULL.
    "category": Case(good=["free", "pro", "pro", " basic ", "Enterprise"], bad=[None, "   "]),
    "ordinal": Case(
        good=["low", "High", "medium", " low "],
        bad=[None, "  "],
        # An ordinal codec learns the levels it is fitted on: an off-scale label is only
        # missing when it first appears on new data.
        unseen=["extreme"],
    ),
    "text": Case(
        good=["Arrived late and the box was damaged.", "great product", "Ünïcode ✓ works"],
        bad=[None, " \t "],
    ),
    "email": Case(
        good=["Jane.Doe@Gmail.com", "bob@acme.io", " ops@mail.acme.co.uk ", "x@corp.de"],
        bad=[None, "not-an-email"],
    ),
    "domain": Case(
        good=["acme.com", "www.acme.com", "shop.example.co.uk", "Globex.NET"],
        bad=[None, "localhost"],
    ),
    "url": Case(
        good=[
            "https://www.acme.com/p/shoes?q=1&size=42",
            "http://shop.example.co.uk",
            "ftp://files.acme.com/pub/x.tar.gz",
            "www.blog.io/posts/hello-world",
        ],
        bad=[None, "not a url"],
    ),
    "phone": Case(
        good=["+1 (415) 555-0123", "+44 20 7946 0958", "0049 30 1234567", "(415) 555-0199"],
        bad=[None, "call me"],
    ),
    "json": Case(
        good=[
            '{"total": 12.5, "shipping": {"city": "Oslo", "days": 2}}',
            '{"total": 99, "shipping": {"city": "Lima", "days": 7}, "tags": ["a", "b"]}',
            '{"total": 3.0, "shipping": {"city": "Oslo"}}',
            "[1, 2, 3]",
        ],
        bad=[None, "{not json"],
    ),
    "vector": Case(
        good=[[0.1, 0.2, 0.3], [1.0, -1.0, 0.5], [0.0, 0.0, 0.0], [3.0, 2.0, 1.0]],
        bad=[None, [0.1, 0.2], [0.1, float("nan"), 0.3]],
    ),
}


def case_for(type_name: str) -> Case:
    assert type_name in CASES, f"add test values for the new column type '{type_name}' to CASES"
    return CASES[type_name]


def model_batch(codec: Codec, values: list | np.ndarray) -> dict[str, torch.Tensor]:
    """Tensors as `pipeline.spaces.reads` builds them (text vectors random here)."""
    batch = {
        k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in codec.transform(values).items()
    }
    if codec.semantic:
        batch["text"] = torch.randn(len(values), TEXT_DIM)
    return batch


def test_every_case_is_a_registered_type() -> None:
    assert set(CASES) == set(type_names())


@pytest.mark.parametrize("type_name", type_names())
def test_type_module_is_consistent(type_name: str) -> None:
    column = column_type(type_name)
    assert column.name == type_name
    assert column.codec.type == type_name
    assert column.reads_numbers == case_for(type_name).numbers


@pytest.mark.parametrize("type_name", type_names())
def test_codec_marks_missing_values(type_name: str) -> None:
    case = case_for(type_name)
    codec = fit_codec(type_name, "col", case.fitted())
    arrays = codec.transform(case.raw())
    assert arrays["present"].dtype == bool
    assert arrays["present"].tolist() == case.present
    for name, array in arrays.items():
        assert len(array) == len(case.present), name
        if array.dtype.kind == "f":
            assert np.isfinite(array).all(), name


@pytest.mark.parametrize("type_name", [n for n in type_names() if column_type(n).codec.semantic])
def test_semantic_text_is_none_exactly_where_missing(type_name: str) -> None:
    case = case_for(type_name)
    codec = fit_codec(type_name, "col", case.fitted())
    texts = codec.texts(case.raw())
    assert [t is not None for t in texts] == case.present
    assert all(isinstance(t, str) and t for t in texts if t is not None)


@pytest.mark.parametrize("type_name", type_names())
def test_state_round_trip_gives_identical_output(type_name: str) -> None:
    case = case_for(type_name)
    codec = fit_codec(type_name, "col", case.fitted())
    state = json.loads(json.dumps(codec.state()))
    assert state["type"] == type_name and state["column"] == "col"
    restored = codec_from_state(state)
    assert type(restored) is type(codec)
    assert restored.column == "col"
    assert restored.sizes() == codec.sizes()
    expected, actual = codec.transform(case.raw()), restored.transform(case.raw())
    assert actual.keys() == expected.keys()
    for name in expected:
        assert actual[name].dtype == expected[name].dtype, name
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


@pytest.mark.parametrize("type_name", type_names())
def test_encoder_gives_one_finite_token_per_row(type_name: str) -> None:
    torch.manual_seed(0)
    case = case_for(type_name)
    codec = fit_codec(type_name, "col", case.fitted())
    encoder = build_encoder(type_name, codec.sizes(), d_model=16)
    with torch.no_grad():
        token = encoder(model_batch(codec, case.raw()))
    assert token.shape == (len(case.present), 16)
    assert torch.isfinite(token).all()


def test_email_drops_the_person_and_flags_free_mail() -> None:
    values = ["Jane.Doe@Gmail.com", "bob@gmail.com", "alice@acme.io", "carol@acme.io"]
    codec = fit_codec("email", "contact", values)
    texts = codec.texts(values)
    assert texts == ["gmail.com", "gmail.com", "acme.io", "acme.io"]
    assert not any(part in json.dumps(codec.state()) for part in ("jane", "Jane", "bob", "alice"))
    arrays = codec.transform(values)
    assert arrays["flags"][:, 0].tolist() == [1.0, 1.0, 0.0, 0.0]
    for name, array in arrays.items():  # two people at one domain are the same value
        np.testing.assert_array_equal(array[0], array[1], err_msg=name)
        np.testing.assert_array_equal(array[2], array[3], err_msg=name)
    assert arrays["index"][0] != arrays["index"][2]


def test_url_parts() -> None:
    values = [
        "https://www.acme.com/p/shoes/red?q=1&size=42",
        "http://shop.example.co.uk",
        "ftp://files.acme.com/pub",
        "www.blog.io/a/b?ref",
    ]
    codec = fit_codec("url", "site", values)
    arrays = codec.transform(values)
    assert arrays["present"].all()
    assert codec.texts(values) == [
        "acme.com shoes red",
        "example.co.uk",
        "acme.com pub",
        "blog.io",
    ]
    schemes = [("http", "https", "ftp", "other")[i] for i in arrays["scheme"]]
    assert schemes == ["https", "http", "ftp", "http"]
    assert arrays["index"][0] == arrays["index"][2] != arrays["index"][1]
    depth, has_query, query_size = arrays["features"].T
    np.testing.assert_allclose(depth, np.log1p([3, 0, 1, 2]), rtol=1e-6)
    assert has_query.tolist() == [1.0, 0.0, 0.0, 1.0]
    np.testing.assert_allclose(query_size, np.log1p([2, 0, 0, 0]), rtol=1e-6)


def test_phone_country_and_area() -> None:
    values = ["+1 (415) 555-0123", "+1 415 555 0199", "+44 20 7946 0958", "(415) 555-0123"]
    codec = fit_codec("phone", "phone", values)
    arrays = codec.transform(values)
    countries = [codec.countries[i - 1] for i in arrays["country"]]
    areas = [codec.areas[i - 1] for i in arrays["target"]]
    assert countries == ["1", "1", "44", "national"]
    assert areas == ["1-415", "1-415", "44-207", "national-415"]
    assert "0123" not in json.dumps(codec.state())


def test_ordinal_keeps_order() -> None:
    codec = fit_codec("ordinal", "priority", ["high", "low", "medium", "Low", None])
    arrays = codec.transform(["low", "medium", "HIGH", "extreme", None])
    rank = arrays["features"][:, 0]
    assert rank[0] < rank[1] < rank[2]
    assert arrays["index"][0] < arrays["index"][1] < arrays["index"][2]
    assert arrays["present"].tolist() == [True, True, True, False, False]
    assert arrays["index"][3] == 0


def test_ordinal_off_scale_labels_keep_their_sorted_order() -> None:
    """Labels on no known scale are levels in sorted order (the order of an unknown scale)."""
    codec = fit_codec("ordinal", "tier", ["tier 2", "tier 1", "tier 3", "tier 1"])
    assert codec.levels == ["tier 1", "tier 2", "tier 3"]


def test_json_flattens_paths_and_scores_numbers() -> None:
    values = [
        '{"total": 10, "shipping": {"city": "Oslo", "address": {"zip": "0150"}}}',
        '{"total": 30, "shipping": {"city": "Lima", "address": {"zip": "15001"}}}',
        '{"total": 20, "shipping": {"city": "Oslo"}, "items": [1, 2]}',
    ]
    codec = fit_codec("json", "payload", values)
    assert set(codec.paths) == {"total", "shipping/city", "shipping/address/zip", "items"}
    assert set(codec.numeric) == {"total", "items"}
    assert codec.numeric["total"] == pytest.approx((20.0, math.sqrt(200 / 3)))
    features = codec.transform(values)["features"]
    total = codec.paths.index("total")
    std = math.sqrt(200 / 3)
    np.testing.assert_allclose(features[:, 2 * total + 1], [-10 / std, 10 / std, 0.0], rtol=1e-6)
    zip_code = codec.paths.index("shipping/address/zip")
    assert features[:, 2 * zip_code].tolist() == [1.0, 1.0, 0.0]
    assert features[:, 2 * zip_code + 1].tolist() == [0.0, 0.0, 0.0]
    assert codec.texts(values[:1]) == ["total: 10; shipping/city: Oslo; shipping/address/zip: 0150"]


def test_vector_wrong_length_or_nan_is_missing() -> None:
    fitted = [[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 2.0, 2.0], [9.0, 9.0]]
    codec = fit_codec("vector", "embedding", fitted)
    assert codec.sizes() == {"dim": 3}
    np.testing.assert_allclose(codec.mean, [2.0, 2.0, 2.0])
    arrays = codec.transform(
        [[1.0, 2.0, 3.0], [1.0, 2.0], [1.0, float("nan"), 3.0], [1.0, None, 3.0], None]
    )
    assert arrays["present"].tolist() == [True, False, False, False, False]
    assert (arrays["vector"][1:] == 0).all()
    np.testing.assert_allclose(np.linalg.norm(arrays["target_vector"][0]), 1.0, rtol=1e-6)


def test_scalar_nan_and_inf_are_missing() -> None:
    codec = fit_codec("scalar", "amount", np.array([1.0, 2.0, 3.0, 4.0, np.nan, np.inf]))
    assert codec.mean == pytest.approx(2.5)
    arrays = codec.transform(np.array([2.5, np.nan, np.inf, -np.inf, 1e300]))
    assert arrays["present"].tolist() == [True, False, False, False, True]
    assert (arrays["features"][1:4] == 0).all()
    assert arrays["features"][0, 0] == 0.0  # z of the mean
    assert np.isfinite(arrays["features"]).all()
    assert arrays["features"][4].max() <= 6.0


def test_timestamp_features_are_finite_and_bounded() -> None:
    seconds = np.array([EPOCH_2024 + d * DAY for d in range(0, 400, 7)] + [-5.3e9, 7.2e9])
    codec = fit_codec("timestamp", "signup", seconds)
    features = codec.transform(seconds)["features"]
    assert np.isfinite(features).all()
    assert np.abs(features[:, 0]).max() <= 6.0
    assert np.abs(features[:, 1:]).max() <= 1.0 + 1e-6
    weekday = codec.transform(np.array([EPOCH_2024, EPOCH_2024 + 7 * DAY]))["features"]
    np.testing.assert_allclose(weekday[0, 3:5], weekday[1, 3:5], atol=1e-5)


def test_a_codec_names_its_text_encoder_and_an_older_one_is_stale() -> None:
    """A model trained on other text vectors must be retrained, not fed the new ones."""
    codec = fit_codec("category", "plan", ["free", "pro", "free", None])
    state = codec.state()
    assert state["text_model"] == MODEL_NAME
    assert stale_text_codecs({"plan": state}) == {}
    saved_before = {k: v for k, v in state.items() if k != "text_model"}
    assert stale_text_codecs({"plan": saved_before}) == {"plan": LEGACY_TEXT_MODEL}
    assert codec_from_state(saved_before).vocabulary == codec.vocabulary
    numbers = fit_codec("scalar", "amount", np.array([1.0, 2.0, 3.0]))
    assert "text_model" not in numbers.state()  # no text, nothing to go stale
    assert stale_text_codecs({"amount": numbers.state()}) == {}
