"""torchstarter: one training engine, tasks on top."""

__version__ = "0.1.0"
