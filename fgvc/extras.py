"""Optional dependencies: import a module of an ``extras_require`` group, or say in one line how to install it.

The explanation commands (``fgvc.explain``, ``fgvc.project``) stand on pytorch-grad-cam (Grad-CAM, Selvaraju et al.
2017), scikit-learn (t-SNE, van der Maaten & Hinton 2008; PCA) and, optionally, umap-learn (UMAP, McInnes et al.
2018). They are declared in setup.cfg's ``explain`` extra and imported only inside those commands, through
:func:`require`, so that training and evaluation never import them.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from fgvc.errors import MissingExtraError  # defined with every user error; importable here as before

__all__ = ["MissingExtraError", "require"]


def require(module: str, package: str, feature: str, extra: str | None = "explain") -> ModuleType:
    """``importlib.import_module(module)``, or :class:`MissingExtraError` naming ``pip install -e '.[extra]'``
    (or, with ``extra=None``, for a package no extra declares, ``pip install package``) when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        how = f"pip install -e '.[{extra}]' (or pip install {package})" if extra else f"pip install {package}"
        raise MissingExtraError(
            f"{feature} needs the package '{package}' ({exc.name or module} is not installed): run {how}") from exc
