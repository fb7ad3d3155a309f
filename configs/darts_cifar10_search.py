"""BayesNAS proxy cell search on CIFAR-10 in the DARTS space (paper §6.1).

Presets pick λ_w: `--config=configs/darts_cifar10_search.py:0.007` (the paper
reports 0.01, 0.007 and 0.005). Every field can be overridden on the command
line, e.g. `--config.search.rounds=2 --config.input.batch_size=128`.
"""
import ml_collections

from bayesnas_jax.spaces.ops import DARTS_OPS

LAMBDA_W_PRESETS = ("0.01", "0.007", "0.005")


def cifar10_data():
  """The `data` section for CIFAR-10, shared with the evaluation config."""
  data = ml_collections.ConfigDict()
  data.source = "auto"
  data.name = "cifar10"
  data.path = ""  # A folder with <split>/<class>/*.jpg, or cifar-10-batches-py.
  data.data_dir = ""  # TFDS data_dir with prepared cifar10.
  data.splits = ("train", "test")
  data.cache_dir = ""
  data.skip_unreadable = False  # True: leave out image files that cannot be decoded.
  return data


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.mode = "search"
  config.tensorboard = True
  config.log_every_steps = 50
  config.checkpoint_every_steps = 500
  config.stop_after_steps = 0  # > 0 ends the launch early (resume testing).
  config.compilation_cache_dir = ""  # e.g. ~/.cache/bayesnas_jax: reuse XLA builds.
  # "" keeps JAX's default for float32 matmuls and convolutions (TF32 on recent
  # NVIDIA GPUs); "highest" or "float32" asks for full float32.
  config.matmul_precision = ""

  config.data = cifar10_data()

  config.input = ml_collections.ConfigDict()
  config.input.batch_size = 64
  config.input.crop_padding = 4
  config.input.flip = True
  config.input.cutout_length = 0
  config.input.image_size = 0  # > 0: resize images to this size on device.
  # > 0: a fixed random subset of the train / test split (the same for every seed).
  config.input.train_examples = 0
  config.input.test_examples = 0

  config.space = ml_collections.ConfigDict()
  config.space.name = "darts"
  config.space.ops = tuple(DARTS_OPS)
  config.space.num_nodes = 4
  config.space.channels = 16
  config.space.layers = 8
  config.space.stem_multiplier = 3
  config.space.num_classes = 10
  config.space.depthwise_impl = "auto"  # auto | shifted | lax | masked_dense
  # Normal cells run all their source nodes in one scan: one op block to
  # compile per cell shape instead of two, for 6 padded edge slots of compute
  # (20 for 14 edges). False: inputs' edges as one block, no padding there.
  config.space.scan_inputs = True
  # True: each weighted op's activations are recomputed in the backward pass
  # instead of kept: one more forward of those ops for a third of the memory
  # (8 cells, batch 64: 6.1 GB instead of 17.1 GB, and a faster step on CPU;
  # BENCHMARKS.md). Same gradients and curvature.
  config.space.remat = True
  config.space.origin = "output"  # input (SPEC §1) | output (w⁰ after the ops, §7)

  config.search = ml_collections.ConfigDict()
  config.search.rounds = 1  # T_max; each round is one epoch of joint training.
  config.search.epochs_per_round = 1
  config.search.warmup_fraction = 0.1  # Weights alone first, as the released code.
  config.search.warmup_epochs = 1
  config.search.optimizer = "sgd"
  config.search.learning_rate = 0.1
  config.search.momentum = 0.9
  config.search.grad_clip = 5.0  # Global-norm clipping as in DARTS; 0 turns it off.
  config.search.lambda_w = 0.01  # Sparsity intensity (eq. 21); also divides H.
  config.search.weight_decay = 0.01  # λ of λ‖W‖² (Algorithm 1 initialisation).
  config.search.curvature_mode = "hessian"  # hessian | ggn
  # bfloat16: the network computes in bf16; curvature accumulation and the prior
  # update stay float32.
  config.search.compute_dtype = "float32"
  # 0: all batches of the round; K: the last K (the exact sources "ggn" and "exact"
  # cost one pass per scalar and batch: take 10 or so with them).
  config.search.curvature_batches = 0
  # after: a pass with frozen weights after the round's training (Algorithm 1).
  # during: the curvature comes out of the training steps' own backward pass
  # (one compiled step, no extra pass; weights move while it is measured).
  config.search.curvature_pass = "after"
  config.search.dependency = "full"  # full (SPEC §2) | edge_only (released code)
  config.search.grouping = "cell_type"  # cell_type (eq. 21) | none (eq. 16)
  # What prunes after each round: "entropy" (the paper: γ ≤ prune_threshold) or
  # "evidence" (the marginal likelihood peaks at γ = 0: Σ H(Hw² − λ_w) ≤ 0).
  config.search.prune_rule = "entropy"
  config.search.prune_threshold = 0.05854983152431917  # 1/(2πe): entropy ≤ 0.
  config.search.lambda_ramp = "none"  # none | linear: round t of T uses λ_w·t/T
  # A decision whose margin is under this many standard errors of the
  # curvature's batch noise is reported as inside the noise.
  config.search.confidence_z = 2.0
  config.search.curvature_samples = 1  # "sampled" source: label draws per batch
  config.search.top_k = 2  # inputs (edges, or (edge, op) pairs) per node in the cell.
  # Method options of SPEC §7 (docs/method_options.md; QUALITY.md has the evidence
  # the defaults were chosen by; the paper's literal choices are the first listed).
  # recursion | exact | ggn | sampled (arch scalars). "sampled" estimates the
  # GGN without bias at one backward pass per batch and label draw; on the NB201
  # table its cells matched the exact GGN's (QUALITY.md, 2026-12-07).
  config.search.curvature_source = "sampled"
  config.search.rank_by = "curvature"  # gamma | curvature (H) | saliency (w²H)
  config.search.derivation = "edges"  # pairs | edges (DARTS: best op per edge, k edges)
  config.search.zero_curvature = "prune"  # keep | prune: groups with H ≤ tol·λ_w
  config.search.zero_tolerance = 1e-6
  config.search.lambda_w_origin = 0.0  # > 0: the origin scalars' own λ_w
  config.search.penalty_budget = 0.0  # > 0: L1 budget per round (lr·coef·steps)
  config.search.retrain_between_rounds = 0  # epochs of step 5 between rounds

  config.retrain = ml_collections.ConfigDict()
  config.retrain.epochs = 0  # > 0: retrain the derived cell at search size, then test.

  # The short training protocol of `python -m launch.quality` (searched cells
  # against random cells): the evaluation config it names, with these fields
  # set (and `quality.model`'s fields set on its `model` section).
  config.quality = ml_collections.ConfigDict()
  config.quality.eval_config = "configs.darts_cifar10_eval"
  config.quality.epochs = 10
  config.quality.learning_rate = 0.05
  config.quality.batch_size = 96
  config.quality.train_examples = 0
  config.quality.test_examples = 0
  config.quality.resize = 0
  config.quality.image_size = 32
  config.quality.channels = 16
  config.quality.drop_path_prob = 0.0
  config.quality.cutout_length = 0
  config.quality.model = ml_collections.ConfigDict()
  config.quality.model.layers = 8
  config.quality.model.auxiliary = False

  if arg:
    if arg not in LAMBDA_W_PRESETS:
      raise ValueError(f"config preset: expected one of {LAMBDA_W_PRESETS}, got {arg!r}")
    config.search.lambda_w = float(arg)
  return config
