"""Email addresses: the local part (the person) is dropped; the domain, its TLD and whether it
is a free-mail provider are kept."""

from __future__ import annotations

import numpy as np

from pipeline.encoders.base import ColumnType, label
from pipeline.encoders.domain import DomainCodec, HostEncoder

FREE_MAIL = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "hotmail.com", "outlook.com",
        "live.com", "msn.com", "aol.com", "icloud.com", "me.com", "mail.com", "gmx.de", "gmx.net",
        "web.de", "proton.me", "protonmail.com", "yandex.ru", "mail.ru", "qq.com", "163.com",
        "zoho.com", "fastmail.com",
    }
)  # fmt: skip
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$"


class EmailCodec(DomainCodec):
    type = "email"

    @staticmethod
    def domain(value: object) -> str | None:
        text = label(value)
        if text is None or "@" not in text:
            return None
        return text.rsplit("@", 1)[1].lower().strip(".") or None

    def transform(self, values: list) -> dict[str, np.ndarray]:
        domains = [self.domain(v) for v in values]
        arrays = self.host_arrays(domains)
        free = [d in FREE_MAIL for d in domains]
        arrays["flags"] = np.array(free, dtype=np.float32)[:, None]
        return arrays


COLUMN_TYPE = ColumnType(
    name="email",
    codec=EmailCodec,
    encoder=lambda sizes, d_model: HostEncoder(
        sizes["n_classes"], sizes["n_tlds"], d_model, n_flags=1
    ),
    looks_like=f"regexp_matches(lower({{value}}), '{EMAIL_PATTERN}')",
    priority=40,
)
