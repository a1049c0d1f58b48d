"""Class names as words a text encoder can read: the prompt names of zero-shot classification.

CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision") classifies an
image by comparing it with a sentence per class ("a photo of a Black-footed Albatross, a type of bird."), so the
class names must read as words, not folder names:

* CUB-200-2011: ``001.Black_footed_Albatross`` -> ``Black-footed Albatross``. The numeric prefix goes; a run of
  lower-case tokens after a capitalised one is a hyphenated compound (``Black_and_white_Warbler`` ->
  ``Black-and-white Warbler``, ``Nelson_Sharp_tailed_Sparrow`` -> ``Nelson Sharp-tailed Sparrow``); every other
  underscore is a space.
* Oxford Flowers 102: the names of ``cat_to_name.json`` as they are (``pink primrose``); without that file the reader
  names classes ``class_<id>``, which say nothing to a text encoder: :func:`prompt_names` refuses them.
* image folders, CSV manifests and anything else: underscores to spaces (``snow_leopard`` -> ``snow leopard``).
"""
from __future__ import annotations

import re
from typing import Sequence

from fgvc.errors import DataError

__all__ = ["cub_display_name", "folder_display_name", "prompt_names", "text_domain", "PLACEHOLDER_NAME"]

_CUB_PREFIX = re.compile(r"^\d+\.")
PLACEHOLDER_NAME = re.compile(r"^class_\d+$")  # what a reader calls a class it has no name for
CUB_LAYOUT = ("cub200", "synthetic")  # data sets whose class folders follow CUB's NNN.Capitalised_words
_DOMAINS = {"cub200": "birds", "flowers102": "flowers"}


def cub_display_name(folder: str) -> str:
    """``001.Black_footed_Albatross`` (or ``Black_footed_Albatross``) -> ``Black-footed Albatross``."""
    words: list[list[str]] = []
    for token in (t for t in _CUB_PREFIX.sub("", folder.strip()).split("_") if t):
        if words and token[0].islower() and words[-1][0][0].isupper():
            words[-1].append(token)  # a lower-case token after a capitalised word: hyphenated compound
        else:
            words.append([token])
    return " ".join("-".join(w) for w in words)


def folder_display_name(folder: str) -> str:
    """``snow_leopard`` -> ``snow leopard`` (underscores to spaces, runs of spaces collapsed)."""
    return " ".join(folder.replace("_", " ").split())


def text_domain(dataset: str) -> str:
    """Which default prompt templates fit data set ``dataset``: ``birds``, ``flowers`` or ``generic``."""
    return _DOMAINS.get(str(dataset).lower(), "generic")


def prompt_names(dataset: str, classes: Sequence[str]) -> list[str]:
    """The names of ``classes`` (a data set's ``classes``, indexed by label) to put into prompts; a
    :class:`~fgvc.errors.DataError` when a class has only a placeholder name (``class_12``)."""
    name = str(dataset).lower()
    placeholders = [c for c in classes if PLACEHOLDER_NAME.match(str(c))]
    if placeholders:
        hint = ("put cat_to_name.json (class id -> name) in data.root or set data.args.names_file"
                if name == "flowers102" else "give the classes real names (folder names or a label column)")
        raise DataError(f"{len(placeholders)} of {len(classes)} classes of data set '{dataset}' have no name (e.g. "
                        f"{placeholders[0]}), and zero-shot classification reads class names: {hint}")
    if name in CUB_LAYOUT:
        return [cub_display_name(c) for c in classes]
    if name == "flowers102":
        return [" ".join(str(c).split()) for c in classes]
    return [folder_display_name(c) for c in classes]
