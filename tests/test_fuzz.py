"""Schemathesis on the real gateway: no server error and no answer the spec does not describe."""

from __future__ import annotations

import re

from tests.conftest import ADMIN_TOKEN
from tests.fuzz import fuzz


def test_schemathesis_finds_nothing_wrong_on_the_gateway(fleet_url: str) -> None:
    report = fuzz(fleet_url, examples=10, token=ADMIN_TOKEN)
    cases = re.search(r"(\d+) generated, (\d+) passed", report)
    assert cases and int(cases.group(1)) > 200 and cases.group(1) == cases.group(2), report[-3000:]
    print(f"\nSchemathesis: {cases.group(0)}")
