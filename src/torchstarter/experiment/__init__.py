"""Experiment folders: what train, evaluate and predict read from and write to a model dir."""
