"""The shared training machinery: loop, checkpoints, metrics, optimisation, RNG."""
