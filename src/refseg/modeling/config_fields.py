"""Config fields that combine transformers' validators (``transformers.utils.type_validators``).

A field takes one validator in transformers (``interval(min=1)(default=8)``); the sizes below need two.
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import validated_field
from transformers.utils.type_validators import interval, is_divisible_by

__all__ = ["positive_multiple_of"]


def positive_multiple_of(divisor: int, default: int) -> Any:
    """A dataclass field holding a multiple of ``divisor`` that is at least ``divisor``."""
    validators = [
        *interval(min=divisor)().metadata["validator"],
        *is_divisible_by(divisor)().metadata["validator"],
    ]
    return validated_field(validators, default=default)
