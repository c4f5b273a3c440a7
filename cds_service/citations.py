"""The citation registry (rules/citations.yaml): what a card may cite, and how sure we are.

Every citation carries its identifiers (journal reference, DOI, PMID, URL), each with its own
verification status, plus the study design, size and evidence level(s). Cards pull citations
from here only. Two safety properties are enforced by `lint_registry` and by the renderer:

* only a *verified* identifier becomes a link; a partly verified or unverified one is printed
  as text with its status beside it, so a card never presents it as confirmed;
* a DOI on the `forbidden` list (with the reason) can never be cited, linked or printed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

EvidenceLevel = Literal[
    "label",
    "guideline",
    "rct",
    "phase2",
    "phase1",
    "retrospective",
    "case-report",
    "abstract",
    "preclinical",
]
EVIDENCE_LEVELS: Mapping[str, str] = {
    "label": "prescribing information",
    "guideline": "guideline",
    "rct": "randomised trial",
    "phase2": "phase 2 trial",
    "phase1": "phase 1 trial",
    "retrospective": "retrospective series",
    "case-report": "case report",
    "abstract": "conference abstract (not peer-reviewed)",
    "preclinical": "preclinical",
}
"""The closed evidence-level vocabulary, with the words a card prints for each."""

Status = Literal["verified", "partly", "unverified"]
STATUS_WORDS: Mapping[str, str] = {"partly": "partly verified", "unverified": "unverified"}

_DOI = re.compile(r"^10\.\d{4,9}/\S+$")
_PMID = re.compile(r"^[1-9][0-9]{0,8}$")
_KEY = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_NCT = re.compile(r"^NCT[0-9]{8}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_min_length=1)


class Identifier(_Model):
    """One identifier and how sure we are of it."""

    value: str
    status: Status
    note: str | None = None


class Citation(_Model):
    short: str = Field(max_length=60)
    """Short label used inline and as the card source, e.g. "Porkka et al., Blood 2008"."""
    authors: str | None = None
    title: str | None = None
    journal: Identifier | None = None
    """Journal reference (journal year;volume(issue):pages) with its status."""
    year: int | None = Field(default=None, ge=1950, le=2100)
    doi: Identifier | None = None
    pmid: Identifier | None = None
    url: Identifier | None = None
    registry: Identifier | None = None
    """Trial registration (ClinicalTrials.gov NCT number), linked only when verified."""
    no_identifier_reason: str | None = None
    """Why a citation has no DOI, PMID or URL (then the card says no identifier was found)."""
    design: str
    n: int | None = Field(default=None, ge=1)
    levels: tuple[EvidenceLevel, ...] = Field(min_length=1)
    status: Status
    """Overall verification status of the citation."""
    note: str | None = None


class Forbidden(_Model):
    doi: str
    reason: str


class RegistryFile(_Model):
    citations: dict[str, Citation]
    forbidden: tuple[Forbidden, ...] = ()


@dataclass(frozen=True)
class Registry:
    citations: Mapping[str, Citation]
    forbidden: tuple[Forbidden, ...]

    def get(self, key: str) -> Citation:
        return self.citations[key]


def parse_registry(data: Any) -> tuple[Registry | None, list[tuple[tuple[str | int, ...], str]]]:
    """Validate the registry data; returns (registry or None, problems as (key path, message))."""
    try:
        parsed = RegistryFile.model_validate(data)
    except ValidationError as exc:
        return None, [(tuple(e["loc"]), e["msg"]) for e in exc.errors(include_url=False)]
    registry = Registry(dict(parsed.citations), parsed.forbidden)
    return registry, lint_registry(registry)


def doi_url(doi: str) -> str:
    return f"https://doi.org/{doi}"


def pubmed_url(pmid: str) -> str:
    return f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/"


def registry_url(nct: str) -> str:
    return f"https://clinicaltrials.gov/study/{nct}"


def _norm(text: str) -> str:
    return text.strip().lower()


def forbidden_hit(registry: Registry, text: str) -> Forbidden | None:
    """The forbidden entry whose DOI appears anywhere in `text` (case-insensitive), if any."""
    low = text.lower()
    for entry in registry.forbidden:
        if _norm(entry.doi) in low:
            return entry
    return None


def lint_registry(registry: Registry) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems in a parsed registry: missing identifiers, malformed ones, forbidden DOIs."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for entry in registry.forbidden:
        if not _DOI.match(entry.doi):
            problems.append((("forbidden",), f"'{entry.doi}' is not a DOI"))
    for key, c in registry.citations.items():
        at: tuple[str | int, ...] = ("citations", key)
        if not _KEY.match(key):
            problems.append((at, f"citation key '{key}' must be lower-case letters, digits, _"))
        has_id = any(i is not None for i in (c.doi, c.pmid, c.url, c.registry))
        if not has_id and not c.no_identifier_reason:
            problems.append(
                (
                    at,
                    "a citation needs a DOI, a PMID or a URL (or, when none exists, "
                    "no_identifier_reason saying why)",
                )
            )
        if has_id and c.no_identifier_reason:
            problems.append((at, "no_identifier_reason given although an identifier exists"))
        if c.doi is not None and not _DOI.match(c.doi.value):
            problems.append(((*at, "doi"), f"'{c.doi.value}' is not a DOI (10.xxxx/...)"))
        if c.pmid is not None and not _PMID.match(c.pmid.value):
            problems.append(((*at, "pmid"), f"'{c.pmid.value}' is not a PMID"))
        if c.registry is not None and not _NCT.match(c.registry.value):
            problems.append(((*at, "registry"), f"'{c.registry.value}' is not an NCT number"))
        if c.url is not None and not c.url.value.startswith("https://"):
            problems.append(((*at, "url"), "URLs must be absolute https:// addresses"))
        idents = (c.journal, c.doi, c.pmid, c.url, c.registry)
        statuses = [i.status for i in idents if i is not None]
        if c.status == "verified" and any(s != "verified" for s in statuses):
            problems.append(
                (
                    (*at, "status"),
                    "status 'verified' but an identifier is not verified (use 'partly')",
                )
            )
        texts = [
            c.short,
            c.authors or "",
            c.title or "",
            c.note or "",
            *(i.value for i in idents if i is not None),
        ]
        for text in texts:
            hit = forbidden_hit(registry, text)
            if hit is not None:
                problems.append((at, f"cites forbidden DOI {hit.doi}: {hit.reason}"))
                break
    return problems


# ---- presentation ----------------------------------------------------------------------------


def verified_links(c: Citation) -> list[tuple[str, str]]:
    """(label, absolute URL) for every *verified* identifier of a citation."""
    out: list[tuple[str, str]] = []
    if c.doi is not None and c.doi.status == "verified":
        out.append((f"{c.short} — doi:{c.doi.value}", doi_url(c.doi.value)))
    if c.pmid is not None and c.pmid.status == "verified":
        out.append((f"{c.short} — PubMed {c.pmid.value}", pubmed_url(c.pmid.value)))
    if c.url is not None and c.url.status == "verified":
        out.append((c.short, c.url.value))
    if c.registry is not None and c.registry.status == "verified":
        out.append((f"{c.short} — {c.registry.value}", registry_url(c.registry.value)))
    return out


def primary_url(c: Citation) -> str | None:
    """The first verified link of a citation (DOI, then PubMed, then URL), if any."""
    links = verified_links(c)
    return links[0][1] if links else None


def level_words(c: Citation) -> str:
    return " + ".join(EVIDENCE_LEVELS[level] for level in c.levels)


def evidence_tag(c: Citation) -> str:
    """Inline tag placed beside a claim: "(Cao et al. 2023: case report, n=2)"."""
    size = f", n={c.n}" if c.n is not None else ""
    return f"({c.short}: {level_words(c)}{size})"


def evidence_entry(c: Citation) -> str:
    """One line of a card's evidence section: level, design and size."""
    size = f"; n={c.n}" if c.n is not None else ""
    return f"{c.short} — {level_words(c)}: {c.design}{size}"


def _identifier_text(kind: str, ident: Identifier, link: str | None) -> str:
    if ident.status == "verified":
        return f"{kind} [{ident.value}]({link})" if link else f"{kind} {ident.value}"
    # an unverified address is printed as a code span: shown, never made clickable (GitHub-
    # flavoured renderers autolink bare URLs, but never inside code)
    value = f"`{ident.value}`" if kind == "URL" else ident.value
    return f"{kind} {value} ({STATUS_WORDS[ident.status]})"


def reference_entry(c: Citation) -> str:
    """Full reference line in Markdown; unverified identifiers are printed as such, unlinked."""
    parts: list[str] = [f"**{c.short}**:"]
    if c.authors:
        parts.append(c.authors.rstrip(".") + ".")
    if c.title:
        parts.append(c.title.rstrip(".") + ".")
    if c.journal is not None:
        journal = c.journal.value
        if c.journal.status != "verified":
            journal += f" (journal reference {STATUS_WORDS[c.journal.status]})"
        parts.append(journal + ".")
    if c.doi is not None:
        parts.append(_identifier_text("DOI", c.doi, doi_url(c.doi.value)) + ".")
    if c.pmid is not None:
        parts.append(_identifier_text("PMID", c.pmid, pubmed_url(c.pmid.value)) + ".")
    if c.url is not None:
        parts.append(_identifier_text("URL", c.url, c.url.value) + ".")
    if c.registry is not None:
        link = registry_url(c.registry.value)
        parts.append(_identifier_text("Trial", c.registry, link) + ".")
    if c.no_identifier_reason:
        parts.append(f"No DOI, PMID or URL found: {c.no_identifier_reason.rstrip('.')}.")
    return " ".join(parts)
