"""BayesNAS search (Algorithm 1): objectives, jitted steps, the HARD update and
the round driver."""
