"""How a surname is written for the names model: one normalisation for the dataset loader, training and
serving (the dataset keeps only names the model can read, so it needs the same rule; it lives here, at
the bottom floor, for both)."""

from __future__ import annotations

import unicodedata

MAX_NAME_CHARS = 64
# No apostrophe: the training data writes O'Brien as "O Brien" or "Obrien", so apostrophes (and dots, as in
# "St. John") fold into spaces instead of reaching the network as a character it never saw.
ALPHABET = " -abcdefghijklmnopqrstuvwxyz"
NORMALISATION = ("casefold; ł ø æ œ đ ð þ ı ħ transliterated; NFKD without combining marks; "
                 "apostrophes and dots to spaces; whitespace collapsed")

# Letters that NFKD does not decompose; apostrophes and dots become spaces; typographic dashes a hyphen.
_FOLD = str.maketrans({
    "ł": "l", "ø": "o", "æ": "ae", "œ": "oe", "đ": "d", "ð": "d", "þ": "th", "ı": "i", "ħ": "h",
    "'": " ", "’": " ", "‘": " ", "`": " ", "´": " ", "ʼ": " ", "ʻ": " ", ".": " ",
    "‐": "-", "‑": "-", "–": "-", "—": "-",
})


def normalise(name: str) -> str:
    """Fold case, accents and punctuation variants, so "Müller", "MULLER" and "muller" are one input.

    Characters outside the alphabet are kept; the vocabulary maps them to UNK.
    """
    text = unicodedata.normalize("NFKD", name.casefold().translate(_FOLD))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(text.split())
