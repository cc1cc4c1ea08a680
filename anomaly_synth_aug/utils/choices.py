"""String enums for options with a fixed set of values, parsed with an error that lists them.

A ``StrEnum`` member *is* its string: it compares equal to ``"repaint"``, saves to JSON as
``"repaint"``, and jsonargparse and YAML configs take either. ``parse_choice`` turns a user's
string into the member, or raises ``InvalidInputError`` naming the option and its values.

Example:
    >>> class SamplingMode(StrEnum):
    ...     repaint = "repaint"
    ...     inversion = "inversion"
    >>> parse_choice(SamplingMode, "repaint", "mode")
    <SamplingMode.repaint: 'repaint'>
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from anomaly_synth_aug.errors import InvalidInputError

Choice = TypeVar("Choice", bound=StrEnum)


def parse_choice(choices: type[Choice], value: object, name: str) -> Choice:
    """``value`` as a member of ``choices``, or an ``InvalidInputError`` that lists the allowed values."""
    try:
        return choices(value)
    except ValueError:
        allowed = [member.value for member in choices]
        raise InvalidInputError(f"unknown {name} {value!r}", fix=f"use one of {allowed}") from None


__all__ = ["parse_choice"]
