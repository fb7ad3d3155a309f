"""Training and evaluation of derived architectures (SPEC §4; DARTS evaluation layout).

- ``network`` — the evaluation network of a genotype: ``init`` and ``apply``.
- ``counting`` — parameters and multiply-accumulates per image, computed from the network.
- ``train`` — ``train_and_evaluate`` (resumable training with test accuracy) and
  ``summarize`` (parameters and FLOPs without training).
"""
