"""Clinical facts from one patient's FHIR record: the layer rules are written against.

::

    extract.py      the driver: visit resources → evidence → reduce → Facts (and the
                    pre-normalisation gate for Observations no reader reads)
    catalogue.py    every fact declared once: kind, values, sources (prefetch), reducer
    reducers.py     how evidence over time becomes a fact (yes-only, latest-wins, status with
                    a cleared state, exposure with supersession and staleness, …)
    evidence.py     the declared evidence keys (Ev), the extraction context, dates
    parameters.py   windows and thresholds from rules/facts.yaml
    concepts.py     every value-set concept id the readers name
    reading.py      FHIR shapes every reader reads (references, texts, status rules)
    matching.py     CodeableConcepts, texts and result values against the value sets
    conditions.py   readers, one per resource family …
    observations.py   … labs, CSF, MRD, disease status, smoking
    variants.py       … ABL1 variants and mutation analyses, BCR::ABL1 fusions
    cd19.py           … CD19 on the leukemic population
    reports.py        … DiagnosticReport conclusions
    exposure.py       … medication records
    procedures.py     … transplant, cellular therapy, lumbar punctures
    drugs.py, orders.py   ingredients of records and of the orders under decision
    model.py        the types (Fact, Facts, PartialDate, Provenance, OrderedItem)
    report.py       facts for people and as JSON (`cds-service facts`)
"""
