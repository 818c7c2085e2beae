"""Times (dates, timestamps, date strings in common formats): linear position, cyclical parts
(year, week, day, month) and a quantile bin. Values outside 1800-2200 count as unparseable."""

from __future__ import annotations

import numpy as np

from pipeline.encoders.base import Codec, ColumnType, finite_values, quantile_edges
from pipeline.encoders.scalar import number_encoder

DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%m/%d/%Y",
    "%d.%m.%Y",
    "%d-%b-%Y",
    "%b %d, %Y",
    "%d %b %Y",
    "%Y%m%dT%H%M%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
)
_FORMATS_SQL = "[" + ", ".join(f"'{f}'" for f in DATE_FORMATS) + "]"
_PARSED = "coalesce(try_cast({value} as timestamp), try_strptime({value}, " + _FORMATS_SQL + "))"
_IN_RANGE = "year({t}) between 1800 and 2200"


class TimestampCodec(Codec):
    """Epoch seconds in, nine features and a bin out."""

    type = "timestamp"
    n_features = 9

    def __init__(self, column: str, mean: float, std: float, edges: list[float]) -> None:
        super().__init__(column)
        self.mean, self.std = float(mean), float(std)
        self.edges = np.asarray(edges, dtype=np.float64)
        self.n_classes = len(self.edges) + 1

    @classmethod
    def fit(cls, column: str, values: np.ndarray) -> TimestampCodec:
        finite = finite_values(values)
        return cls(column, float(finite.mean()), float(finite.std()) or 1.0, quantile_edges(finite))

    def transform(self, values: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(values, dtype=np.float64)
        present = np.isfinite(x)
        t = np.where(present, x, self.mean)
        day = t / 86400.0
        parts = [np.clip((t - self.mean) / self.std, -6, 6)]
        for period, phase in ((365.2425, day), (7.0, day + 3), (1.0, day), (30.436875, day)):
            angle = 2 * np.pi * (phase % period) / period
            parts += [np.sin(angle), np.cos(angle)]
        features = np.stack(parts, axis=1)
        bins = np.searchsorted(self.edges, t, side="right")
        return {
            "present": present,
            "features": np.where(present[:, None], features, 0).astype(np.float32),
            "target": np.where(present, bins, 0).astype(np.int64),
        }

    def state(self) -> dict:
        return {**super().state(), "mean": self.mean, "std": self.std, "edges": self.edges.tolist()}


def _read_sql() -> str:
    native = "try_cast({column} as timestamp)"
    parsed = _PARSED.replace("{value}", "trim(cast({column} as varchar))")
    t = f"coalesce({native}, {parsed})"
    return f"case when {_IN_RANGE.format(t=t)} then epoch({t})::double end"


COLUMN_TYPE = ColumnType(
    name="timestamp",
    codec=TimestampCodec,
    encoder=number_encoder,
    read_sql=_read_sql(),
    reads_numbers=True,
    native=r"^(DATE|TIMESTAMP.*|DATETIME)$",
    looks_like=f"{_IN_RANGE.format(t=_PARSED)} and not regexp_matches({{value}}, '^[0-9.]+$')",
    priority=30,
)
