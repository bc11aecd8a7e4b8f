"""Surnames labelled with the country where most of their bearers live, from the ``names-dataset`` package.

The package (3.3.1) holds ~980,000 last names from the 2021 Facebook leak, each with the share of its
bearers in each of up to 10 countries (its top 10, so the shares sum to 1 over those). The rule:

* a label is a country or a small group of countries (``LABEL_COUNTRIES``); a surname gets the label
  whose countries hold at least ``min_share`` (default 0.7) of its bearers, otherwise it is left out;
* the surname must also be within place ``max_rank`` (default 10,000) of the package's frequency ranking
  of one of the label's countries, which drops one-off junk such as typos and nicknames and the rare
  spellings whose country shares rest on a handful of people;
* it must normalise to 2-64 characters of the model's alphabet (Latin letters, space and -);
* spellings that normalise alike (Müller, Muller) are one surname, the one with the clearest majority.

The package's table for Iran (IR) carries a copy of the Czech names (Novák: 47 % CZ, 49 % IR), so IR is
dropped from a name's shares whenever it also has a CZ share within a factor of two of IR's.

Seed labels the data cannot give: Korean (Facebook barely covers Korea; Korean surnames are held by the
US and its labelled names are mostly given names), Vietnamese (no Vietnam in the data) and Scottish
(only the United Kingdom). Most bearers of common Chinese surnames (Wang, Chen) live outside greater
China on Facebook, so "Chinese" is mostly Cantonese and Wade-Giles spellings of Hong Kong and Taiwan.
"""

from __future__ import annotations

import gc
import re
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import pandas as pd

from data.name_text import ALPHABET, MAX_NAME_CHARS, normalise
from fleet.training import SEED

SOURCE = "names-dataset 3.3.1 last names (2021 Facebook leak, 105 countries, top-10 country shares)"
LABEL_COUNTRIES: dict[str, tuple[str, ...]] = {
    "Arabic-speaking": ("AE", "BH", "DZ", "EG", "IQ", "JO", "KW", "LB", "LY", "MA", "OM", "PS", "QA", "SA",
                        "SD", "SY", "TN", "YE"),
    "Chinese": ("CN", "HK", "MO", "TW"),
    "Czech": ("CZ",),
    "Dutch": ("NL",),
    "English": ("GB",),
    "French": ("FR",),
    "German": ("AT", "DE"),
    "Greek": ("CY", "GR"),
    "Hungarian": ("HU",),
    "Irish": ("IE",),
    "Italian": ("IT",),
    "Japanese": ("JP",),
    "Polish": ("PL",),
    "Portuguese": ("PT",),
    "Russian": ("RU",),
    "Spanish": ("ES",),
    "Swedish": ("SE",),
    "Turkish": ("TR",),
}
COUNTRY_LABEL = {country: label for label, countries in LABEL_COUNTRIES.items() for country in countries}
_READABLE = re.compile(f"[{re.escape(ALPHABET)}]*[a-z][{re.escape(ALPHABET)}]*[a-z][{re.escape(ALPHABET)}]*")
# Chosen on held-out sets labelled by the same rule, 18 classes x up to 3,000 names, the same net:
# share 0.6 and no rank cap 75.1 % top-1 / 90.9 % top-3; 0.7: 76.9 / 91.2; 0.8: 76.3 / 91.0;
# 0.7 within rank 10,000: 78.0 / 92.3 (the classes stay >= 1,000 names). Up to 6,000 names a class
# rather than 3,000 (74,754 names instead of 45,031; nine classes have more than 5,000 to give) took the
# wider net from 78.3 / 92.9 to 81.1 / 93.7; 5,000 gave 79.9 / 93.1.
MIN_SHARE = 0.7
PER_CLASS = 6000
MAX_RANK: int | None = 10_000
LABEL_MEANING = (
    "the country (or group of countries, see label_countries) where most bearers of the surname live "
    "among Facebook users in 2021, not ethnicity"
)


def load(per_class: int = PER_CLASS, min_share: float = MIN_SHARE, seed: int = SEED,
         max_rank: int | None = MAX_RANK) -> pd.DataFrame:
    """At most ``per_class`` surnames per label, drawn at random with ``seed``; columns ``name``, ``label``.

    ``max_rank`` keeps only surnames within that place of the frequency ranking of one of their label's
    countries: rarer entries are more often typos or one family's spelling, whose label says little.
    The first call in a process reads the package (~10 s, ~1 GB briefly); later calls reuse the labelled
    table, so a small subset for tests costs one read.
    """
    labelled = candidates(min_share)
    if max_rank is not None:
        labelled = labelled[labelled["rank"] <= max_rank]
    picked = [group.sample(n=min(per_class, len(group)), random_state=seed)
              for _, group in labelled.groupby("label", sort=True)]
    frame = pd.concat(picked).sort_values(["label", "name"])
    return frame[["name", "label"]].reset_index(drop=True)


@cache
def candidates(min_share: float = MIN_SHARE) -> pd.DataFrame:
    """Every surname the rule labels, with its share; computed once per process and never written to disk."""
    with _no_gc():  # a million small dicts: the cyclic collector would triple the time and free nothing
        rows = [(surname, *found) for surname, info in _last_names().items()
                if (found := label_of(info, min_share)) is not None]
    frame = pd.DataFrame(rows, columns=["name", "label", "share", "rank"])
    frame["key"] = frame["name"].map(normalise)
    frame = frame[frame["key"].map(_usable)]
    frame = frame.sort_values(["share", "name"], ascending=[False, True]).drop_duplicates("key")
    return frame.sort_values(["label", "key"]).reset_index(drop=True)


def label_of(info: dict[str, Any], min_share: float = MIN_SHARE) -> tuple[str, float, int] | None:
    """The label holding ``min_share`` of a surname's bearers and ranking it, with that share and the
    surname's best rank among the label's countries; else None."""
    if info["rank"].keys().isdisjoint(COUNTRY_LABEL):
        return None  # ranked in none of the labelled countries: the cheap test first
    shares: dict[str, float] = info["country"]
    if "CZ" in shares and "IR" in shares and 0.5 <= shares["IR"] / max(shares["CZ"], 1e-9) <= 2:
        shares = {country: share for country, share in shares.items() if country != "IR"}
    total = sum(shares.values())
    by_label: dict[str, float] = defaultdict(float)
    for country, share in shares.items():
        if country in COUNTRY_LABEL:
            by_label[COUNTRY_LABEL[country]] += share
    if not by_label or total <= 0:
        return None
    label, share = max(by_label.items(), key=lambda item: item[1])
    ranks = [info["rank"][c] for c in LABEL_COUNTRIES[label] if c in info["rank"]]
    if share / total < min_share or not ranks:
        return None
    return label, round(share / total, 4), int(min(ranks))


def _usable(key: str) -> bool:
    """Only names the model can read in full: no UNK characters, at least two letters."""
    return len(key) <= MAX_NAME_CHARS and _READABLE.fullmatch(key) is not None


def _last_names() -> dict[str, dict[str, Any]]:
    """The package's last-name table: surname → country shares, per-country ranks."""
    from names_dataset import NameDataset

    return NameDataset(load_first_names=False, load_last_names=True).last_names


@contextmanager
def _no_gc() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
