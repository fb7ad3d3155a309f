"""The tiny cell DAG and its hand-worked switches, shared by tests/test_prior.py and
tests/test_prior_pruning.py."""
import numpy as np

# Tiny cell DAG used throughout: inputs 0, 1; intermediate nodes 2, 3; 2 ops per edge.
EDGES = ((0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_INPUTS = 2


def close(actual, expected, rtol=1e-12, atol=0.0):
  np.testing.assert_allclose(np.asarray(actual), np.asarray(expected, dtype=np.float64),
                             rtol=rtol, atol=atol)


# Switches for the tiny DAG.
#        e0=(0,2) e1=(1,2) e2=(0,3) e3=(1,3) e4=(2,3)
S0 = np.array([1.0, 2.0, 1.0, 4.0, 3.0])
SOP = np.array([[1.0, 3.0], [2.0, 2.0], [1.0, 1.0], [4.0, 4.0], [6.0, 2.0]])
# Per-path AND h(s0, s):
#   e0: h(1,1)=1/2, h(1,3)=(1+1/3)^-1=3/4      → edge sum 5/4
#   e1: h(2,2)=1,   h(2,2)=1                   → 2
#   e2: h(1,1)=1/2, 1/2                        → 1
#   e3: h(4,4)=2,   2                          → 4
#   e4: h(3,6)=(1/3+1/6)^-1=2, h(3,2)=(1/3+1/2)^-1=6/5 → 16/5
# S_in(0) = S_in(1) = ∞;  S_in(2) = 5/4 + 2 = 13/4;  S_in(3) = 1 + 4 + 16/5 = 41/5 (unused:
# node 3 has no out-edge here).
EDGE_ONLY_OP = [[1 / 2, 3 / 4], [1.0, 1.0], [1 / 2, 1 / 2], [2.0, 2.0], [2.0, 6 / 5]]
# "full": edges out of inputs: γ⁰ = h(∞, s⁰) = s⁰ and γ = h(s⁰, s) (as edge_only).
# e4 (out of node 2, S_in = 13/4):
#   γ⁰ = (4/13 + 1/3)^-1 = ((12+13)/39)^-1 = 39/25
#   op0: (4/13 + 1/3 + 1/6)^-1 = (4/13 + 1/2)^-1 = (21/26)^-1 = 26/21
#   op1: (4/13 + 1/3 + 1/2)^-1 = (4/13 + 5/6)^-1 = ((24+65)/78)^-1 = 78/89
FULL_ORIGIN = [1.0, 2.0, 1.0, 4.0, 39 / 25]
FULL_OP = [[1 / 2, 3 / 4], [1.0, 1.0], [1 / 2, 1 / 2], [2.0, 2.0], [26 / 21, 78 / 89]]
