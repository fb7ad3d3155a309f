"""Training and evaluation of derived architectures (SPEC §4; DARTS evaluation layout).

- ``darts_network``, ``nb201_network``, ``tree_network`` — the evaluation network of a
  genotype of each space: ``init`` and ``apply``; ``models`` names them
  (``config.model.name``).
- ``layers`` — the batch norm and conv-BN layers they share.
- ``counting`` — parameters and multiply-accumulates per image, computed from the network.
- ``train`` — ``train_and_evaluate`` (resumable training with test accuracy) and
  ``summarize`` (parameters and FLOPs without training).
"""
