"""Domain names (acme.com, shop.example.co.uk): the registrable domain as a label with its
MiniLM embedding, plus the top-level domain."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.encoders.base import Codec, ColumnType, label, vocabulary
from pipeline.encoders.category import CategoryEncoder

_SECOND_LEVEL = {"co", "com", "org", "net", "ac", "gov", "edu", "ne", "or"}
HOST_PATTERN = r"^([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,24}$"


def registrable_domain(host: str | None) -> str | None:
    """`shop.example.co.uk` -> `example.co.uk`; `www.acme.com` -> `acme.com`."""
    if not host:
        return None
    parts = host.lower().strip(".").split(".")
    if len(parts) < 2:
        return None
    keep = 3 if len(parts) >= 3 and parts[-2] in _SECOND_LEVEL and len(parts[-1]) == 2 else 2
    return ".".join(parts[-keep:])


def top_level(domain: str | None) -> str | None:
    return domain.rsplit(".", 1)[-1] if domain else None


class DomainCodec(Codec):
    """Registrable domain (vocabulary index, 0 = rare or unseen) and TLD index."""

    type = "domain"
    semantic = True

    def __init__(self, column: str, vocabulary: list[str], tlds: list[str]) -> None:
        super().__init__(column)
        self.vocabulary, self.tlds = list(vocabulary), list(tlds)
        self.index = {value: i + 1 for i, value in enumerate(self.vocabulary)}
        self.tld_index = {value: i + 1 for i, value in enumerate(self.tlds)}
        self.n_classes = len(self.vocabulary) + 1

    @staticmethod
    def domain(value: object) -> str | None:
        return registrable_domain(label(value))

    @classmethod
    def fit(cls, column: str, values: list) -> DomainCodec:
        domains = [cls.domain(v) for v in values]
        return cls(column, vocabulary(domains), vocabulary([top_level(d) for d in domains], 200))

    def texts(self, values: list) -> list[str | None]:
        return [self.domain(v) for v in values]

    def transform(self, values: list) -> dict[str, np.ndarray]:
        return self.host_arrays([self.domain(v) for v in values])

    def host_arrays(self, domains: list[str | None]) -> dict[str, np.ndarray]:
        """The domain part every host-like type shares: presence, label and TLD indexes."""
        index = np.array([self.index.get(d, 0) for d in domains], dtype=np.int64)
        tld = np.array([self.tld_index.get(top_level(d), 0) for d in domains], dtype=np.int64)
        present = np.array([d is not None for d in domains], dtype=bool)
        return {"present": present, "index": index, "tld": tld, "target": index}

    def sizes(self) -> dict[str, int]:
        return {"n_classes": self.n_classes, "n_tlds": len(self.tlds) + 1}

    def state(self) -> dict:
        return {**super().state(), "vocabulary": self.vocabulary, "tlds": self.tlds}


class HostEncoder(nn.Module):
    """Domain label (learned + semantic), TLD, and optional 0/1 flags (e.g. free mail)."""

    def __init__(self, n_classes: int, n_tlds: int, d_model: int, n_flags: int = 0) -> None:
        super().__init__()
        self.domain = CategoryEncoder(n_classes, d_model)
        self.tld = nn.Embedding(n_tlds, d_model)
        self.flags = nn.Linear(n_flags, d_model) if n_flags else None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        token = self.domain(batch) + self.tld(batch["tld"])
        if self.flags is not None:
            token = token + self.flags(batch["flags"])
        return token


COLUMN_TYPE = ColumnType(
    name="domain",
    codec=DomainCodec,
    encoder=lambda sizes, d_model: HostEncoder(sizes["n_classes"], sizes["n_tlds"], d_model),
    looks_like=f"regexp_matches(lower({{value}}), '{HOST_PATTERN}') "
    "and regexp_matches({value}, '[a-zA-Z]')",
    priority=90,
)
