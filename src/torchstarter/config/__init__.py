"""Hyper-parameters: typed schemas, validation and loading of params.json."""

from torchstarter.config.params import Params, load_params, parse_overrides, validate_params
from torchstarter.config.schema import COMMON_SCHEMA, REQUIRED, Field

__all__ = [
    "COMMON_SCHEMA",
    "REQUIRED",
    "Field",
    "Params",
    "load_params",
    "parse_overrides",
    "validate_params",
]
