"""Every value-set concept id the fact readers name, declared once.

Readers refer to concepts through these names (`C.CSF_BLASTS`), never through string
literals, so a concept renamed or dropped in `rules/valuesets/` is caught: the rule-set loader
(and so `cds-service check` and service start-up) refuses value sets that lack any id listed
here (`missing_concepts`), instead of a reader going silently blind.
"""

from __future__ import annotations

from cds_service.facts.model import INGREDIENTS
from cds_service.terminology import CUE_CONCEPTS, Terminology

_IDS: list[str] = []


def _c(concept_id: str) -> str:
    _IDS.append(concept_id)
    return concept_id


# diagnoses and disease status
B_ALL = _c("b_all")
B_ALL_PH_MORPHOLOGY = _c("b_all_ph_morphology")
CML = _c("cml")
CML_ICD10_BCR_ABL_POSITIVE = _c("cml_icd10_bcr_abl_positive")
CML_LYMPHOID_BLAST = _c("cml_lymphoid_blast")
T_ALL = _c("t_all")
INTRATHECAL_ROUTE = _c("intrathecal_route")
INTRATHECAL_THERAPY = _c("intrathecal_therapy")
AML = _c("aml")
ALL_IN_RELAPSE = _c("all_in_relapse")
RELAPSE = _c("relapse")
RELAPSE_EXACT = _c("relapse_exact")
LEUKEMIA = _c("leukemia")
PH_POSITIVE = _c("ph_positive")
PH_NEGATIVE = _c("ph_negative")
HSCT_STATUS = _c("hsct_status")
CAR_T_HISTORY = _c("car_t_history")
DISEASE_STATUS = _c("disease_status")
RESPONSE = _c("response")
NO_RESPONSE = _c("no_response")
# result values
RESULT_POSITIVE = _c("result_positive")
RESULT_NEGATIVE = _c("result_negative")
RESULT_DIM = _c("result_dim")
RESULT_EQUIVOCAL = _c("result_equivocal")
# BCR::ABL1, t(9;22), karyotype
BCR_ABL1_RATIO = _c("bcr_abl1_ratio")
BCR_ABL1_ASSAY = _c("bcr_abl1_assay")
BCR_ABL1_P190 = _c("bcr_abl1_p190")
BCR_ABL1_P210 = _c("bcr_abl1_p210")
BCR_ABL1_P230 = _c("bcr_abl1_p230")
BCR_ABL1_LOG = _c("bcr_abl1_log")
BCR_ABL1_FUSION = _c("bcr_abl1_fusion")
T_9_22 = _c("t_9_22")
CYTOGENETICS = _c("cytogenetics")
ISCN = _c("iscn")
# ABL1 kinase domain and variant Observations
ABL1_MUTATION_ANALYSIS = _c("abl1_mutation_analysis")
ABL1_T315I = _c("abl1_t315i")
GENETIC_VARIANT_ASSESSMENT = _c("genetic_variant_assessment")
GENE_STUDIED = _c("gene_studied")
HGVS_C = _c("hgvs_c")
HGVS_P = _c("hgvs_p")
HGVS_G = _c("hgvs_g")
TRANSCRIPT_REFERENCE = _c("transcript_reference")
VARIANT_DATABASE_ID = _c("variant_database_id")
ABL1_GENE = _c("abl1_gene")
BCR_GENE = _c("bcr_gene")
GENE_FUSION = _c("gene_fusion")
VARIANT_PRESENT = _c("variant_present")
VARIANT_ABSENT = _c("variant_absent")
VARIANT_NOT_CALLED = _c("variant_not_called")
# CNS and extramedullary
CSF_BLASTS = _c("csf_blasts")
CSF_CYTOLOGY = _c("csf_cytology")
CSF_FLOW = _c("csf_flow")
CNS_STATUS = _c("cns_status")
CNS_LEUKEMIA = _c("cns_leukemia")
CNS1 = _c("cns1")
CNS_SITE = _c("cns_site")
LUMBAR_PUNCTURE = _c("lumbar_puncture")
TESTIS_SITE = _c("testis_site")
SKIN_SITE = _c("skin_site")
OTHER_EM_SITE = _c("other_em_site")
TESTICULAR_INVOLVEMENT = _c("testicular_involvement")
SKIN_INVOLVEMENT = _c("skin_involvement")
EXTRAMEDULLARY_DISEASE = _c("extramedullary_disease")
# CD19, populations, MRD
CD19_TEST = _c("cd19_test")
IMMUNOPHENOTYPE = _c("immunophenotype")
POPULATION_LEUKEMIC = _c("population_leukemic")
POPULATION_LYMPHOCYTES = _c("population_lymphocytes")
MRD = _c("mrd")
# why a drug was stopped
STOP_RESISTANCE = _c("stop_resistance")
STOP_INTOLERANCE = _c("stop_intolerance")
# drugs (the canonical ingredients are concepts of drugs.yaml)
BLINATUMOMAB = _c("blinatumomab")
# transplant and cellular therapy
HSCT = _c("hsct")
ALLO_QUALIFIER = _c("allo_qualifier")
AUTO_QUALIFIER = _c("auto_qualifier")
HAPLOIDENTICAL = _c("haploidentical")
TREG_TCON = _c("treg_tcon")
DLI = _c("dli")
CAR_T = _c("car_t")
# arterial risk and smoking
HYPERTENSION = _c("hypertension")
DIABETES = _c("diabetes")
DYSLIPIDEMIA = _c("dyslipidemia")
SMOKING = _c("smoking")
CORONARY_ARTERY_DISEASE = _c("coronary_artery_disease")
STROKE = _c("stroke")
PERIPHERAL_ARTERIAL_DISEASE = _c("peripheral_arterial_disease")
SMOKING_STATUS = _c("smoking_status")
SMOKER_CURRENT = _c("smoker_current")
SMOKER_FORMER = _c("smoker_former")
SMOKER_NEVER = _c("smoker_never")

CONCEPT_IDS: frozenset[str] = frozenset((*_IDS, *CUE_CONCEPTS.values(), *INGREDIENTS))
"""Every concept id the readers need: their own, the polarity cues and the drug ingredients."""


def missing_concepts(term: Terminology) -> list[str]:
    """Concept ids the readers need that the value sets do not define, sorted."""
    return sorted(c for c in CONCEPT_IDS if c not in term.concepts)
