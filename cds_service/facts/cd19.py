"""CD19 on the leukemic population: positive, negative or dim, from CD19 results and
immunophenotype wording — and never from a lymphocyte count.

Population. CD19 is also the routine B-cell marker: "CD19+ B cells, % of lymphocytes: 0" after
blinatumomab is B-cell aplasia, not CD19-negative leukemia. A result counts only when it is
about the leukemic population: blasts, lymphoblasts, leukemic or abnormal cells, MRD, or a
leukemia immunophenotype (item "blasts"), or when no population is named at all (item
"unstated"); a result that names lymphocytes, B cells, a lymphocyte subset panel or a cell
count per volume is left out (noted in issues).

Polarity. A result whose code names CD19 is read by its value: qualitative words (positive /
negative / dim, weak, partial), or a percentage of blasts expressing CD19 — at least the
`positive_percent` of rules/facts.yaml is positive, 0 (or below a "<" limit) negative,
anything between dim. An immunophenotype text ("CD19+ CD10+", "negative for CD10, CD19 and
CD22", "no CD19-positive blasts detected", "loss of CD19") is read with `cd19_from_text`, whose
negation comes from the one polarity engine (a negated "positive" is negative; an equivocal
statement is nothing); other markers end a statement's scope.
"""

from __future__ import annotations

import re
from typing import Any

from cds_service.facts import concepts as C
from cds_service.facts.evidence import Context, Ev
from cds_service.facts.matching import Matches, match_texts, read_value
from cds_service.facts.model import PartialDate, Provenance
from cds_service.facts.reading import texts_of, value_texts
from cds_service.terminology import Terminology, normalise_text

EMITS = frozenset({Ev.CD19})

_POS = frozenset({"positive", "pos", "bright", "expressed", "expressing"})
_NEG = frozenset({"negative", "neg", "lost", "absent"})
_DIM = frozenset({"dim", "weak", "weakly", "partial", "partially", "heterogeneous", "low"})
_NOT_PHENOTYPE = frozenset({"car", "cart", "directed", "targeted", "targeting", "bispecific"})
_RE_MARKER = re.compile(r"^(cd\d+[a-z]?|tdt|hla|dr|cd)$")
_WINDOW_AFTER = 4
_WINDOW_BEFORE = 8
_COUNT_UNITS = ("/ul", "/mm3", "/l", "cells/", "10*3", "10*9", "#", "{cells}")


def _word_reading(token: str) -> str | None:
    if token in _NEG:
        return "negative"
    if token in _DIM:
        return "dim"
    if token in _POS:
        return "positive"
    return None


def _is_marker(token: str) -> bool:
    return token != "cd19" and bool(_RE_MARKER.match(token))


def _flip(reading: str, polarity: str) -> str | None:
    if polarity == "equivocal":
        return None
    if polarity == "negated":
        return "negative" if reading in ("positive", "dim") else None
    return reading


def _window_left(term: Terminology, tokens: list[str], i: int) -> list[str]:
    """Tokens before tokens[i] that belong to its statement (not to the previous marker)."""
    out: list[str] = []
    for k in range(i - 1, max(-1, i - 1 - term.cues.window_before), -1):
        t = tokens[k]
        if t == "|" or t in term.cues.scope_end or _is_marker(t) or _word_reading(t):
            break
        out.insert(0, t)
    return out


def _window_right(term: Terminology, tokens: list[str], j: int) -> list[str]:
    out: list[str] = []
    for k in range(j, min(len(tokens), j + term.cues.window_after)):
        t = tokens[k]
        if t == "|" or t in term.cues.scope_end or _is_marker(t):
            break
        out.append(t)
    return out


def cd19_from_text(term: Terminology, text: str) -> str | None:
    """'positive' / 'negative' / 'dim' when text states CD19 polarity, else None."""
    # a comma-separated marker list is one statement: commas are list separators here
    norm = normalise_text(text.replace(",", " "))
    if "cd19" not in norm and "cd 19" not in norm:
        return None
    tokens = norm.replace("cd 19", "cd19").split()
    n = len(tokens)
    for i, tok in enumerate(tokens):
        if tok != "cd19":
            continue
        if any(t in _NOT_PHENOTYPE for t in tokens[i + 1 : i + 3]):
            return None  # "CD19 CAR-T", "CD19-directed therapy": not a phenotype
        left = _window_left(term, tokens, i)
        # after: "cd19 negative", "cd19 expression dim", "cd19 not expressed"
        for k in range(i + 1, min(n, i + 1 + _WINDOW_AFTER)):
            t = tokens[k]
            if t == "|" or _is_marker(t):
                break
            reading = _word_reading(t)
            if reading is not None:
                between = tokens[i + 1 : k]
                pol = term.cues.classify([*left, *between], _window_right(term, tokens, k + 1))
                return _flip(reading, pol)
        # before: "negative for cd19", "positive for cd10 cd19", "loss of cd19"
        for k in range(i - 1, max(-1, i - 1 - _WINDOW_BEFORE), -1):
            t = tokens[k]
            if t == "|":
                break
            if t in ("for", "of") and k > 0:
                head = tokens[k - 1]
                if head == "loss":
                    return "negative"
                reading = _word_reading(head)
                if reading is not None:
                    outer = _window_left(term, tokens, k - 1)
                    pol = term.cues.classify(outer, _window_right(term, tokens, i + 1))
                    return _flip(reading, pol)
        pol = term.cues.classify(left, _window_right(term, tokens, i + 1))
        if pol == "negated":
            return "negative"  # "no CD19 expression", "CD19 not detected"
    return None


def population(
    term: Terminology, *texts: str, unit: str | None = None, code: Matches | None = None
) -> str | None:
    """'blasts', 'unstated', or None when the texts name a lymphocyte population (or a count).

    Population words count whatever their polarity ("no CD19+ blasts" is still about blasts,
    "CD19+ B cells absent" still about B cells). A leukemia immunophenotype / flow result
    (`code`) is about the leukemic population unless lymphocytes are named."""
    m: Matches = match_texts(term, [t for t in texts if t])
    named_leukemic = m.mentioned(C.POPULATION_LEUKEMIC, C.MRD)
    lymphocytes = m.mentioned(C.POPULATION_LYMPHOCYTES) or (
        unit is not None and any(u in unit.lower() for u in _COUNT_UNITS)
    )
    if lymphocytes and not named_leukemic:
        return None
    context = m.mentioned(C.IMMUNOPHENOTYPE) or (code is not None and C.IMMUNOPHENOTYPE in code)
    return "blasts" if named_leukemic or context else "unstated"


def _number_reading(
    ctx: Context, number: float, comparator: str | None, unit: str | None
) -> str | None:
    if unit is not None and unit.strip().lower() not in (
        "%",
        "percent",
        "% of blasts",
        "%{blasts}",
    ):
        return None
    if comparator in ("<", "<=") or number <= 0:
        return "negative"
    if number >= ctx.parameters.cd19.positive_percent:
        return "positive"
    return "dim"


def _code_texts(holder: dict[str, Any]) -> list[str]:
    return list(texts_of(holder.get("code")))


def visit_cd19(
    ctx: Context,
    holder: dict[str, Any],
    code: Matches,
    ref: str,
    date: PartialDate | None,
    via: str,
    context: tuple[str, ...] = (),
) -> None:
    """CD19 evidence from one Observation or component (holder); `context` holds the texts of
    the enclosing Observation (a component of a lymphocyte subset panel is about lymphocytes)."""
    texts = value_texts(holder)
    if C.CD19_TEST in code:
        hit = code.hits[C.CD19_TEST]
        reading_v = read_value(ctx.term, holder)
        unit = reading_v.unit
        pop = population(ctx.term, *_code_texts(holder), *context, *texts, unit=unit, code=code)
        if pop is None:
            ctx.issues.append(f"{ref}: CD19 on lymphocytes / B cells, not blast CD19 status")
            return
        reading: str | None = None
        matched = ""
        if reading_v.number is not None:
            reading = _number_reading(ctx, reading_v.number, reading_v.comparator, unit)
            matched = reading_v.matched
        elif reading_v.value is not None:
            reading, matched = reading_v.value, reading_v.matched
        elif not reading_v.equivocal:
            for text in texts:
                word = _word_reading(normalise_text(text))
                if word is not None:
                    reading, matched = word, f'value "{normalise_text(text)}"'
                    break
        if reading is not None:
            prov = Provenance(ref, f"{hit.matched}; {matched}", via)
            ctx.add(Ev.CD19, reading, date, prov, item=pop)
            return
    if C.IMMUNOPHENOTYPE in code or C.CD19_TEST in code:
        for text in texts:
            for statement in re.split(r"(?<=[.;])\s+|\n", text):
                reading = cd19_from_text(ctx.term, statement)
                if reading is None:
                    continue
                pop = population(ctx.term, statement, *_code_texts(holder), *context, code=code)
                if pop is None:
                    ctx.issues.append(
                        f"{ref}: CD19 on lymphocytes / B cells, not blast CD19 status"
                    )
                    continue
                prov = Provenance(ref, f'value text "cd19 {reading}"', "text")
                ctx.add(Ev.CD19, reading, date, prov, item=pop)
                return
