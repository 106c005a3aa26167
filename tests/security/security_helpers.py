"""Helpers of the security suite: the stack it runs against, the hostile names it loads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Engine

from geo.settings import Settings
from tests.small_region import SmallRegion

# Names a spreadsheet would run as formulas, beside ordinary ones.
HOSTILE_NAMES = ('=HYPERLINK("http://evil.example/","click")', "+1+2", "-2+3",
                 "@SUM(A1:A9)", "=cmd|' /C calc'!A0", "Ordinary")


@dataclass
class SecurityStack:
    """A migrated, loaded and scored database, its app over real HTTP, and keys per role."""

    settings: Settings
    engine: Engine
    base_url: str
    region: SmallRegion
    run: dict[str, Any]
    keys: dict[str, str]

    def client(self, role: str | None = None) -> httpx.Client:
        """Return an HTTP client carrying the key of `role` (none for the public)."""
        headers = {"X-API-Key": self.keys[role]} if role else {}
        return httpx.Client(base_url=self.base_url, timeout=60, headers=headers)
