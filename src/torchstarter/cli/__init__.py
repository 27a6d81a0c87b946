"""The `torchstarter` command line."""
