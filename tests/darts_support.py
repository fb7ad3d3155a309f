"""The DARTS op set and cell, and DARTS_V2 (Liu et al., 2019) as a literal and as a
genotype dict: shared by test_derivation.py, test_genotypes.py and test_plots.py."""
from bayesnas_jax import genotypes
from bayesnas_jax.spaces.cell import CellSpec

OPS = genotypes.DARTS_OP_NAMES
SPEC = CellSpec(ops=OPS)  # 4 intermediate nodes, 14 edges

# DARTS_V2 (Liu et al., 2019, the cell of the DARTS paper) as a literal.
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
    "reduce_concat=range(2, 6))")
DARTS_V2_DICT = {
    "normal": [["sep_conv_3x3", 0, 2], ["sep_conv_3x3", 1, 2], ["sep_conv_3x3", 0, 3],
               ["sep_conv_3x3", 1, 3], ["skip_connect", 0, 4], ["sep_conv_3x3", 1, 4],
               ["skip_connect", 0, 5], ["dil_conv_3x3", 2, 5]],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [["max_pool_3x3", 0, 2], ["max_pool_3x3", 1, 2], ["max_pool_3x3", 1, 3],
               ["skip_connect", 2, 3], ["max_pool_3x3", 0, 4], ["skip_connect", 2, 4],
               ["max_pool_3x3", 1, 5], ["skip_connect", 2, 5]],
    "reduce_concat": [2, 3, 4, 5],
}
