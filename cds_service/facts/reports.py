"""Evidence from DiagnosticReports: what a cytogenetics, molecular, flow or pathology report
concludes, from its `conclusion` text and `conclusionCode`.

* Ph: a conclusion naming t(9;22), a BCR::ABL1 fusion or Ph-positive wording is positive
  evidence; the same negated ("t(9;22) not detected") is qualitative negative evidence;
  conclusionCode ICD-O-3 9812/3 is Ph-positive B-ALL.
* B-ALL: conclusionCode naming B-ALL.
* CD19: an immunophenotype / flow report's conclusion, read like an immunophenotype text
  (population rules of facts.cd19).
* ABL1: a kinase-domain mutation report's conclusion, read like a mutation-analysis text.

Entered-in-error, cancelled and registered reports are not evidence; equivocal wording is
not evidence. The date is effective[x], else issued.
"""

from __future__ import annotations

from typing import Any

from cds_service.facts import concepts as C
from cds_service.facts.cd19 import cd19_from_text, population
from cds_service.facts.evidence import Context, Ev, first_date
from cds_service.facts.matching import Matches, match_cc, match_texts
from cds_service.facts.model import Provenance
from cds_service.facts.reading import ref_of, result_is_evidence, texts_of
from cds_service.facts.variants import emit_result, mutations_in_text
from cds_service.fhir_input import as_list

EMITS = frozenset({Ev.PH, Ev.B_ALL, Ev.CD19, Ev.ABL1_RESULT, Ev.ABL1_DETECTED, Ev.ABL1_ABSENT})


def visit_report(ctx: Context, r: dict[str, Any]) -> None:
    if not result_is_evidence(r):
        return
    conclusion = r.get("conclusion")
    text = conclusion if isinstance(conclusion, str) and conclusion.strip() else None
    codes = [c for c in as_list(r.get("conclusionCode")) if isinstance(c, dict)]
    if text is None and not codes:
        return
    ref = ref_of(r)
    date = first_date(
        ctx, r, ref, "effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"
    )
    code = match_cc(ctx.term, r.get("code"))
    cm = match_cc(ctx.term, *codes)
    if C.B_ALL_PH_MORPHOLOGY in cm:
        prov = Provenance(ref, f"conclusionCode {cm.hits[C.B_ALL_PH_MORPHOLOGY].matched}", "code")
        ctx.add(Ev.PH, "positive", date, prov)
        ctx.add(Ev.B_ALL, "yes", date, prov)
    elif C.B_ALL in cm:
        prov = Provenance(ref, f"conclusionCode {cm.hits[C.B_ALL].matched}", cm.hits[C.B_ALL].via)
        ctx.add(Ev.B_ALL, "yes", date, prov)
    if text is None:
        return
    vm = match_texts(ctx.term, [text])
    for concept in (C.T_9_22, C.BCR_ABL1_FUSION, C.PH_POSITIVE):
        if concept in vm:
            prov = Provenance(ref, f"conclusion {vm.hits[concept].matched}", "text")
            ctx.add(Ev.PH, "positive", date, prov, detail="report conclusion")
            break
    else:
        negated = next((c for c in (C.T_9_22, C.BCR_ABL1_FUSION) if c in vm.negated), None)
        if negated is not None or C.PH_NEGATIVE in vm:
            prov = Provenance(ref, "conclusion: t(9;22) / BCR::ABL1 not detected", "text")
            ctx.add(Ev.PH, "negative", date, prov, detail="qualitative result (report)")
    names = [*texts_of(r.get("code")), text]
    if code.any(C.IMMUNOPHENOTYPE, C.CD19_TEST) or vm.any(C.IMMUNOPHENOTYPE):
        _cd19(ctx, text, names, ref, date, code)
    if code.any(C.ABL1_MUTATION_ANALYSIS) or C.ABL1_MUTATION_ANALYSIS in vm:
        _abl1(ctx, text, ref, date)


def _cd19(ctx: Context, text: str, names: list[str], ref: str, date: Any, code: Matches) -> None:
    for statement in text.replace(";", ".").split(". "):
        reading = cd19_from_text(ctx.term, statement)
        if reading is None:
            continue
        pop = population(ctx.term, statement, *names, code=code)
        if pop is None:
            ctx.issues.append(f"{ref}: CD19 on lymphocytes / B cells, not blast CD19 status")
            continue
        prov = Provenance(ref, f'conclusion "cd19 {reading}"', "text")
        ctx.add(Ev.CD19, reading, date, prov, item=pop)
        return


def _abl1(ctx: Context, text: str, ref: str, date: Any) -> None:
    detected, absent, none_said, equivocal = mutations_in_text(ctx.term, text)
    prov = Provenance(ref, "kinase-domain report conclusion", "text")
    emit_result(ctx, date, prov, detected, absent, none_said, equivocal)
