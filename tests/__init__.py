"""The test suite. `tests/<package>/test_<module>.py` (and `tests/test_<module>.py`
for the top-level modules) test one module of `bayesnas_jax` each; `tests/integration/`
runs the CLIs, whole searches, the planted-teacher searches and the README's
examples end to end. Helpers shared by several files live in `*_support.py` and
`curvature_reference.py`; recorded results in `fixtures/`."""
