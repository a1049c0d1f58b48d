"""The key reference pages: ``docs/reference/recipe-keys.md`` (every recipe key of
:data:`fgvc.config_schema.DEFAULTS` with its type, default and meaning from :data:`fgvc.reference.config_keys.MEANINGS`,
plus the keys of ``train.stages``, ``loss.aux`` and ``distill``) and ``docs/reference/run-files.md`` (every JSON key
of a run's files, :mod:`fgvc.reference.run_files`). A recipe key without a meaning is an error, so a new key cannot
land undocumented. ``python -m fgvc.docs_gen`` writes them.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

from fgvc.config_schema import (AUX_KEYS, AUX_REQUIRED, CHOICES, DEFAULTS, DISTILL_DEFAULTS, DISTILL_KEYS, FREE_FORM,
                                RANGES, STAGE_KEYS, STAGE_REQUIRED, TYPES)
from fgvc.reference.command_page import cell
from fgvc.reference.config_keys import MEANINGS, SUB_KEY_MEANINGS
from fgvc.reference.run_files import TABLES

__all__ = ["flatten", "recipe_keys_markdown", "run_files_markdown"]


def flatten(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and dotted not in FREE_FORM:
            yield from flatten(value, dotted + ".")
        else:
            yield dotted, value


def _type_name(types: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def recipe_keys_markdown() -> str:
    """The recipe-key reference page: every key with type, default and meaning."""
    keys = list(flatten(DEFAULTS))
    missing = [k for k, _ in keys if k not in MEANINGS]
    if missing:
        raise KeyError(f"recipe keys without a meaning in fgvc/reference/config_keys.py MEANINGS: {', '.join(missing)}")
    stale = sorted(set(MEANINGS) - {k for k, _ in keys})
    if stale:
        raise KeyError(f"fgvc/reference/config_keys.py MEANINGS names keys the schema does not have: {', '.join(stale)}")
    out = ["# Recipe keys", "",
           "Generated from `fgvc/config_schema.py` (types, defaults, choices, ranges) and `fgvc/reference/config_keys.py` "
           "(meanings) by `python -m fgvc.docs_gen`; do not edit by hand. Any key can be set on the command line "
           "with `--set key.sub=value`.", ""]
    section = None
    for dotted, default in keys:
        top = dotted.split(".")[0]
        if top != section:
            section = top
            out += ["", f"## `{top}`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        types = TYPES.get(dotted) or (type(default),)
        kind = _type_name(types)
        if dotted in CHOICES:
            kind += ": " + ", ".join(f"`{c}`" for c in CHOICES[dotted])
        if dotted in RANGES:  # checked when a recipe loads
            kind += ", " + RANGES[dotted].text()
        shown = default if isinstance(default, str) else json.dumps(default)  # YAML spelling: null, true, [...]
        out.append(f"| `{dotted}` | {cell(kind)} | `{cell(shown)}` | {cell(MEANINGS[dotted])} |")
    for title, spec, required, defaults, prefix in (
            ("`train.stages` entries", STAGE_KEYS, STAGE_REQUIRED, {}, "stages"),
            ("`loss.aux` entries", AUX_KEYS, AUX_REQUIRED, {}, "aux"),
            ("`distill` keys", DISTILL_KEYS, ("teacher",), DISTILL_DEFAULTS, "distill")):
        out += ["", f"## {title}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for key, typ in spec.items():
            default = "required" if key in required else f"`{defaults.get(key, 'null')}`"
            out.append(f"| `{key}` | {typ.__name__} | {default} | {cell(SUB_KEY_MEANINGS[f'{prefix}.{key}'])} |")
    return "\n".join(out).rstrip() + "\n"


def run_files_markdown() -> str:
    """The run-files reference page: every JSON key of a run's files with its meaning."""
    out = ["# Run files: JSON keys", "",
           "Generated from `fgvc/reference/run_files.py` by `python -m fgvc.docs_gen`; do not edit by hand. The files "
           "themselves are listed in [Run directory](run-directory.md). `<head>` stands for a head name of the method "
           "(`logits` for most, WS-DAN `raw`, RA-CNN `scale1`...)."]
    for title, (what, keys) in TABLES.items():
        out += ["", f"## {title}", "", what, "", "| key | meaning |", "|---|---|"]
        out += [f"| `{key}` | {cell(meaning)} |" for key, meaning in keys.items()]
    return "\n".join(out).rstrip() + "\n"
