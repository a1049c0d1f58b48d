"""Name -> builder registries, so recipes name components by string.

A :class:`Registry` maps a lowercase name to a callable (a class or a factory function).
Recipes say ``model.name: wsdan`` and the engine calls ``METHODS.build("wsdan", **kwargs)``.
Unknown names fail with the closest registered names, and keyword arguments are checked
against the builder's signature before the call, so a typo in a recipe reads as a typo.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Iterable

from fgvc.errors import RegistryError

__all__ = ["Registry", "RegistryError", "METHODS", "DATASETS", "LOSSES", "PROTOCOLS", "HEADS", "closest"]


def closest(name: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the nearest choice, or '' when nothing is close."""
    match = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


class Registry:
    """A named table of builders.

    >>> LOSSES = Registry("loss")
    >>> @LOSSES.register("center")
    ... class CenterLoss: ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._table: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(obj: Callable[..., Any]) -> Callable[..., Any]:
            key = (name or obj.__name__).lower()
            if key in self._table and self._table[key] is not obj:
                raise RegistryError(f"{self.kind} '{key}' is registered twice ({self._table[key]} and {obj})")
            self._table[key] = obj
            return obj

        return deco

    def names(self) -> list[str]:
        return sorted(self._table)

    def __contains__(self, name: str) -> bool:
        return str(name).lower() in self._table

    def get(self, name: str) -> Callable[..., Any]:
        key = str(name).lower()
        if key not in self._table:
            raise RegistryError(
                f"unknown {self.kind} '{name}'{closest(key, self._table)}; "
                f"registered {self.kind}s: {', '.join(self.names()) or '(none)'}"
            )
        return self._table[key]

    def check_kwargs(self, name: str, kwargs: dict[str, Any], where: str = "") -> None:
        """Raise if ``kwargs`` holds a key the builder of ``name`` does not accept."""
        fn = self.get(name)
        params = inspect.signature(fn).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        valid = [k for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for key in kwargs:
            if key not in valid:
                loc = f" in {where}" if where else ""
                raise RegistryError(
                    f"{self.kind} '{name}' takes no argument '{key}'{loc}{closest(key, valid)}; "
                    f"it takes: {', '.join(valid)}"
                )

    def build(self, name: str, **kwargs: Any) -> Any:
        self.check_kwargs(name, kwargs)
        return self.get(name)(**kwargs)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


METHODS = Registry("method")
DATASETS = Registry("dataset")
LOSSES = Registry("loss")
PROTOCOLS = Registry("evaluation protocol")
HEADS = Registry("head")  # classification heads on an embedding (fgvc.models.heads)
