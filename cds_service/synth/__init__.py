"""`cds-service synth`: a test kit for integrators (patients and the cards they should see).

`kit.build_kit` makes the patients and computes their cards; `write.write_kit` writes them as
transaction Bundles or a Bulk Data export with expected.json. `noise` (record noise) and
`shapes` (EHR shapes) are the building blocks; the benchmark uses `noise` too.
"""
