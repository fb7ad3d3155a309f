"""DARTS genotypes and a tiny evaluation model, shared by tests/evaluation/
test_counting.py, test_darts_network.py and test_train.py: a cell with two inputs
per node, the same cell with a third input on node 3, and the model settings."""
TWO_INPUTS = {
    "normal": [["sep_conv_3x3", 0, 2], ["skip_connect", 1, 2], ["max_pool_3x3", 0, 3],
               ["dil_conv_3x3", 2, 3]], "normal_concat": [2, 3],
    "reduce": [["avg_pool_3x3", 0, 2], ["skip_connect", 1, 2], ["max_pool_3x3", 1, 3],
               ["skip_connect", 2, 3]], "reduce_concat": [2, 3]}
# Node 3 of the normal cell gets a third input: one more sep_conv_3x3 edge.
EXTRA_EDGE = ["sep_conv_3x3", 1, 3]
THREE_INPUTS = {**TWO_INPUTS, "normal": TWO_INPUTS["normal"] + [EXTRA_EDGE]}
MODEL = {"stem": "cifar", "channels": 4, "layers": 3, "num_classes": 3, "image_size": 8,
         "stem_multiplier": 3, "auxiliary": True}
