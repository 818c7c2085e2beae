"""Phone numbers: the country calling code and the area (the first digits after it); the rest
of the number identifies a person and is dropped. Numbers without `+` are national."""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from pipeline.encoders.base import Codec, ColumnType, label, vocabulary

_TWO_DIGIT_CODES = frozenset(
    {
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45",
        "46", "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61",
        "62", "63", "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94",
        "95", "98",
    }
)  # fmt: skip


def phone_parts(value: object) -> tuple[str, str] | None:
    """(country code or 'national', area) or None when it is not a phone number."""
    text = label(value)
    if text is None:
        return None
    digits = re.sub(r"\D", "", text.split("x")[0].split("ext")[0])
    if not 7 <= len(digits) <= 15:
        return None
    if text.startswith("+") or text.startswith("00"):
        digits = digits[2:] if text.startswith("00") else digits
        if digits[0] in "17":
            country = digits[0]
        elif digits[:2] in _TWO_DIGIT_CODES:
            country = digits[:2]
        else:
            country = digits[:3]
        rest = digits[len(country) :]
    else:
        country, rest = "national", digits.lstrip("0")
    return country, f"{country}-{rest[:3]}"


class PhoneCodec(Codec):
    type = "phone"

    def __init__(self, column: str, countries: list[str], areas: list[str]) -> None:
        super().__init__(column)
        self.countries, self.areas = list(countries), list(areas)
        self.country_index = {c: i + 1 for i, c in enumerate(self.countries)}
        self.area_index = {a: i + 1 for i, a in enumerate(self.areas)}
        self.n_classes = len(self.areas) + 1

    @classmethod
    def fit(cls, column: str, values: list) -> PhoneCodec:
        parts = [phone_parts(v) for v in values]
        return cls(
            column,
            vocabulary([p[0] if p else None for p in parts], 300),
            vocabulary([p[1] if p else None for p in parts]),
        )

    def transform(self, values: list) -> dict[str, np.ndarray]:
        parts = [phone_parts(v) for v in values]
        country = [self.country_index.get(p[0], 0) if p else 0 for p in parts]
        area = [self.area_index.get(p[1], 0) if p else 0 for p in parts]
        return {
            "present": np.array([p is not None for p in parts], dtype=bool),
            "country": np.array(country, dtype=np.int64),
            "target": np.array(area, dtype=np.int64),
        }

    def sizes(self) -> dict[str, int]:
        return {"n_classes": self.n_classes, "n_countries": len(self.countries) + 1}

    def state(self) -> dict:
        return {**super().state(), "countries": self.countries, "areas": self.areas}


class PhoneEncoder(nn.Module):
    def __init__(self, n_countries: int, n_areas: int, d_model: int) -> None:
        super().__init__()
        self.country = nn.Embedding(n_countries, d_model)
        self.area = nn.Embedding(n_areas, d_model)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.country(batch["country"]) + self.area(batch["target"])


COLUMN_TYPE = ColumnType(
    name="phone",
    codec=PhoneCodec,
    encoder=lambda sizes, d_model: PhoneEncoder(sizes["n_countries"], sizes["n_classes"], d_model),
    # A phone number is written like one: a leading + or 00, or digit groups split by spaces,
    # dashes or parentheses (a bare run of digits is a number, not a phone; 2024-03-15 and
    # sentinels like 9999-12-31 are dates, not phones).
    looks_like=r"regexp_matches({value}, '^(\+|00)?[0-9 ()\-]{7,22}$') "
    r"and length(regexp_replace({value}, '[^0-9]', '', 'g')) between 7 and 15 "
    r"and regexp_matches({value}, '^(\+|00)|[ ()\-]') "
    r"and not regexp_matches({value}, '^[0-9]{4}-[0-9]{2}-[0-9]{2}$')",
    priority=35,
)
