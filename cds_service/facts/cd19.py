"""CD19 on blasts: positive, negative or dim, from CD19 results and immunophenotype wording.

A result whose code names CD19 is read by its value: qualitative words (positive / negative /
dim, weak, partial), or a percentage of blasts expressing CD19 — at least
`CD19_POSITIVE_PERCENT` is positive, 0 (or below a "<" limit) negative, anything between dim
(partial). That threshold is the usual flow-cytometry convention for calling a blast marker
positive, not a verified source value. An immunophenotype text ("CD19+ CD10+ CD34+",
"negative for CD19", "loss of CD19") is read with `cd19_from_text`; so is Condition wording
("CD19-negative relapse").
"""

from __future__ import annotations

from typing import Any

from cds_service.facts.evidence import Context, Matches, polarity, value_texts
from cds_service.facts.model import PartialDate, Provenance
from cds_service.terminology import normalise_text

CD19_POSITIVE_PERCENT = 20.0

_POS = frozenset({"positive", "pos", "bright", "expressed"})
_NEG = frozenset({"negative", "neg", "lost", "loss", "absent"})
_DIM = frozenset({"dim", "weak", "weakly", "partial", "partially", "heterogeneous", "low"})
_WINDOW_AFTER = 4
_WINDOW_BEFORE = 8


def _word_reading(token: str) -> str | None:
    if token in _NEG:
        return "negative"
    if token in _DIM:
        return "dim"
    if token in _POS:
        return "positive"
    return None


def cd19_from_text(text: str) -> str | None:
    """'positive' / 'negative' / 'dim' when text states CD19 polarity, else None."""
    norm = normalise_text(text.replace(",", " "))  # a comma-separated marker list is one clause
    if "cd19" not in norm and "cd 19" not in norm:
        return None
    tokens = norm.split()
    n = len(tokens)
    for i, tok in enumerate(tokens):
        width = (
            1
            if tok == "cd19"
            else 2
            if (tok == "cd" and i + 1 < n and tokens[i + 1] == "19")
            else 0
        )
        if not width:
            continue
        # after: "cd19 negative", "cd19 expression dim", "cd19 not expressed"
        negate = False
        for k in range(i + width, min(n, i + width + _WINDOW_AFTER)):
            t = tokens[k]
            if t == "|" or (t.startswith("cd") and t != "cd19" and t[2:].isdigit()):
                break
            if t in ("car", "cart", "directed", "targeted"):
                return None  # "CD19 CAR-T", "CD19-directed therapy": not a phenotype
            if t in ("not", "no"):
                negate = True
                continue
            reading = _word_reading(t)
            if reading is not None:
                return "negative" if negate else reading
        # before: "negative for cd19", "positive for cd10 cd19", "loss of cd19"
        for k in range(i - 1, max(-1, i - 1 - _WINDOW_BEFORE), -1):
            t = tokens[k]
            if t == "|":
                break
            if t in ("for", "of") and k > 0:
                reading = _word_reading(tokens[k - 1])
                if reading is not None:
                    return reading
    return None


def _from_number(number: float, comparator: str | None, unit: str | None) -> str | None:
    if unit not in (None, "%", "percent", "% of blasts", "%{blasts}"):
        return None
    if comparator in ("<", "<=") or number <= 0:
        return "negative"
    if number >= CD19_POSITIVE_PERCENT:
        return "positive"
    return "dim"


def visit_cd19(
    ctx: Context,
    holder: dict[str, Any],
    code: Matches,
    ref: str,
    date: PartialDate | None,
    via: str,
) -> None:
    """CD19 evidence from one Observation or component (holder)."""
    if "cd19_test" in code:
        hit = code.hits["cd19_test"]
        pol = polarity(ctx.term, holder)
        reading: str | None = None
        matched = ""
        if pol.number is not None:
            reading = _from_number(pol.number, pol.comparator, pol.unit)
            matched = pol.matched
        elif pol.value is not None:
            reading, matched = pol.value, pol.matched
        else:
            for text in value_texts(holder):
                word = _word_reading(normalise_text(text))
                if word is not None:
                    reading, matched = word, f'value "{normalise_text(text)}"'
                    break
        if reading is not None:
            ctx.add("cd19", reading, date, Provenance(ref, f"{hit.matched}; {matched}", via))
            return
    if "immunophenotype" in code or "cd19_test" in code:
        for text in value_texts(holder):
            reading = cd19_from_text(text)
            if reading is not None:
                ctx.add(
                    "cd19", reading, date, Provenance(ref, f'value text "cd19 {reading}"', "text")
                )
                return
