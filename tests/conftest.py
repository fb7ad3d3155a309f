"""Float64 is enabled so curvature oracles can be checked at 1e-6 and tighter;
library code takes its dtype from its inputs, so float32 tests still run float32."""
import jax

jax.config.update("jax_enable_x64", True)
