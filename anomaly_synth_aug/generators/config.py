"""``captures_config``: a generator's constructor arguments become its config without being copied by hand.

Generators follow the scikit-learn convention that every constructor argument is kept as an
attribute of the same name: ``get_config``, ``save`` and the fit store's key read them back, and
sampling options can be changed on a live generator. Writing ``self.x = x`` for thirty arguments
is where a new argument gets forgotten. Like diffusers' ``register_to_config`` and Lightning's
``save_hyperparameters``, the decorator records every argument (defaults included) before the body
runs, which then only validates and converts.

Example:
    >>> class MyGenerator(AnomalyGenerator):
    ...     @captures_config
    ...     def __init__(self, size: int = 8, blocks: Sequence[int] = (32, 64)) -> None:
    ...         super().__init__()
    ...         self.blocks = tuple(blocks)  # converted: the attribute keeps the tuple
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

Init = TypeVar("Init", bound=Callable[..., None])


def captures_config(init: Init) -> Init:
    """Decorator for ``__init__``: set each argument (defaults included) as an attribute of the same name first."""
    signature = inspect.signature(init)
    names = [
        name
        for name, parameter in signature.parameters.items()
        if name != "self" and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    ]

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        for name in names:
            setattr(self, name, bound.arguments[name])
        init(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


__all__ = ["captures_config"]
