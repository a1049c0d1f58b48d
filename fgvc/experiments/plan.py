"""The plan of an ablation study: a baseline row, then one change per row (the trick-by-trick table of He et al.
2019, "Bag of Tricks for Image Classification with Convolutional Neural Networks", CVPR 2019).

A step is ``"NAME: key=value [key=value ...]"`` (values parsed exactly as ``fgvc.train --set``; a value may hold
spaces, e.g. ``loss.aux=[{name: center, weight: 0.001}]``: a new item starts only where ``key=`` follows a space), or
``"NAME: RECIPE.yaml [key=value ...]"``, which switches the recipe (e.g. to another method). Rows resolve to validated
recipes:

* independent (default): row i = (the step's recipe, else the base recipe) + the study's ``--set`` + step i's keys,
  compared with row 0;
* ``--cumulative``: row i = (the latest recipe any step up to i named, else the base) + ``--set`` + the keys of
  steps 1..i in order, compared with row i-1. The study's ``--set`` (data root, epochs, input size) and the earlier
  tricks thus carry over to a recipe step, which changes only what its recipe file sets differently; a step after it
  can undo an earlier key (e.g. ``loss.aux=[]``).

A step whose row resolves to the same recipe as the row it is compared with is refused, and so is a key the study
owns (``seed``: the ``--seeds`` axis; ``output.*``: the study's own directories).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence


from fgvc import config
from fgvc.errors import ConfigError, RegistryError, UserError
from fgvc.losses import LOSSES
from fgvc.methods import METHODS

__all__ = ["Step", "Row", "parse_step", "steps_from_file", "resolve_rows", "diff", "fmt_value", "describe_changes"]

_ITEM = re.compile(r"\s+(?=[A-Za-z_][\w.\-]*=)")  # a space before "key=": where the next override starts
_NAMED = re.compile(r"^\s*([^=:]+?)\s*:(?:\s+(.*))?\s*$", re.S)  # "NAME: rest" (no '=' in NAME)
_RECIPE_SUFFIXES = (".yaml", ".yml")
_STUDY_KEYS = ("seed", "output")
_UNSET = object()


@dataclass(frozen=True)
class Step:
    """One change: a name, ``key=value`` overrides (``fgvc.train --set`` syntax) and optionally a recipe file."""

    name: str
    overrides: tuple[str, ...] = ()
    recipe: Path | None = None


@dataclass
class Row:
    """A row of the table: the recipe and overrides it trains (with ``seed=S`` per run added), the resolved
    config, and its differences (key, old, new) against the row it is compared with (``parent``)."""

    index: int
    name: str
    recipe: Path
    overrides: list[str]
    cfg: dict[str, Any]
    parent: int | None = None
    changes: list[tuple[str, Any, Any]] = field(default_factory=list)

    @property
    def slug(self) -> str:
        """``r{index}-{name}``: the row's folder under ``DIR/runs``."""
        return f"r{self.index}-" + (re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")[:40] or "step")


def parse_step(text: str) -> Step:
    """``"NAME: key=value ..."`` or ``"NAME: RECIPE.yaml key=value ..."`` (NAME optional) -> :class:`Step`."""
    m = _NAMED.match(text)
    name, body = (m.group(1), m.group(2) or "") if m else ("", text)
    items = [s for s in _ITEM.split(body.strip()) if s]
    recipe = None
    if items and "=" not in items[0].split(None, 1)[0]:
        head, _, rest = items[0].partition(" ")
        if not head.endswith(_RECIPE_SUFFIXES) or rest.strip():
            raise ConfigError(f"step {text!r}: {items[0]!r} is neither key=value nor a recipe file (.yaml); write "
                              "steps as \"NAME: key=value ...\" or \"NAME: recipes/x.yaml [key=value ...]\"")
        recipe, items = Path(head), items[1:]
    return _checked(Step(name or body.strip(), tuple(items), recipe), text)


def _checked(step: Step, text: str) -> Step:
    if not step.name:
        raise ConfigError(f"step {text!r} is empty: write \"NAME: key=value ...\", e.g. \"+ EMA: train.ema=true\"")
    if not step.overrides and step.recipe is None:
        raise ConfigError(f"step {text!r} sets nothing: give key=value pairs or a recipe file after '{step.name}:'")
    for item in step.overrides:
        config.parse_override(item)  # 'key=value' shape and YAML syntax, with --set's own error
    return step


def steps_from_file(path: str | Path) -> list[Step]:
    """A YAML list whose items are step strings (as ``--step``) or mappings ``{name, set, recipe}``, ``set`` being a
    mapping ``{key: value}`` or a list of ``key=value``; a relative recipe path is read from the file's folder when it
    exists there, else from the working directory."""
    path = Path(path)
    data = _read_list(path)
    steps = []
    for i, item in enumerate(data):
        if isinstance(item, str):
            steps.append(parse_step(item))
            continue
        if not isinstance(item, dict) or "name" not in item or set(item) - {"name", "set", "recipe"}:
            raise ConfigError(f"{path}: step {i + 1} = {item!r} must be a string like \"NAME: key=value\" or a mapping "
                              "with name, set ({key: value} or [key=value]) and optionally recipe")
        sets = item.get("set") or []
        if isinstance(sets, dict):
            sets = [f"{k}={json.dumps(v)}" for k, v in sets.items()]
        if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
            raise ConfigError(f"{path}: step {i + 1} ('{item['name']}'): set must be a mapping or a list of key=value")
        recipe = item.get("recipe")
        if recipe is not None and (path.parent / recipe).is_file():
            recipe = path.parent / recipe
        steps.append(_checked(Step(str(item["name"]), tuple(sets), Path(recipe) if recipe else None), str(item)))
    return steps


def _read_list(path: Path) -> list[Any]:
    return config.read_yaml_file(path, f"--steps-file {path}", list, "a YAML list of steps",
                                 f"--steps-file {path}: no such file")


def _refuse_study_keys(overrides: Iterable[str], what: str) -> None:
    for item in overrides:
        key = config.parse_override(item)[0]
        if key.split(".")[0] in _STUDY_KEYS:
            raise ConfigError(f"{what}: '{key}' is set by the study itself (seed: give --seeds; output: give --output), "
                              "drop it from the step")


def _resolve(recipe: Path, overrides: list[str], what: str) -> dict[str, Any]:
    """``fgvc.train``'s own loading (did-you-mean errors included), plus the method's and loss's argument names, so a
    typo in ``model.args``/``loss.args`` fails before any training."""
    try:
        cfg, _ = config.load_recipe(recipe, overrides)
        METHODS.check_kwargs(cfg["model"]["name"], cfg["model"]["args"], where="model.args")
        LOSSES.check_kwargs(cfg["loss"]["name"], cfg["loss"]["args"], where="loss.args")
    except RegistryError as exc:
        raise RegistryError(f"{what}: {exc}") from exc
    except UserError as exc:
        raise ConfigError(f"{what}: {exc}") from exc
    return cfg


def resolve_rows(base: Path, steps: Sequence[Step], sets: Sequence[str] = (), cumulative: bool = False) -> list[Row]:
    """Row 0 (``base`` + ``sets``) and one row per step, resolved and diffed (see the module docstring)."""
    _refuse_study_keys(sets, "--set")
    rows = [Row(0, "baseline", Path(base), list(sets), _resolve(Path(base), list(sets), f"base recipe {base}"))]
    recipe, carried = Path(base), list(sets)
    for i, step in enumerate(steps, 1):
        what = f"step {i} '{step.name}'"
        _refuse_study_keys(step.overrides, what)
        if cumulative:
            recipe, carried = step.recipe or recipe, carried + list(step.overrides)
            row_recipe, overrides, parent = recipe, list(carried), rows[-1]
        else:
            row_recipe, overrides, parent = step.recipe or Path(base), list(sets) + list(step.overrides), rows[0]
        cfg = _resolve(row_recipe, overrides, what)
        changes = diff(parent.cfg, cfg)
        if not changes:
            now = "; ".join(f"{k} is already {fmt_value(config.get(cfg, k))}"
                            for k in (config.parse_override(o)[0] for o in step.overrides))
            raise ConfigError(f"{what} changes nothing: it resolves to the same recipe as row {parent.index} "
                              f"('{parent.name}'){' (' + now + ')' if now else ''}; drop the step or give it a value "
                              "that differs")
        rows.append(Row(i, step.name, row_recipe, overrides, cfg, parent.index, changes))
    return rows


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Every leaf key whose value differs: ``(dotted key, old, new)``; a key absent on one side is :data:`_UNSET`."""
    a, b = config.leaves(old), config.leaves(new)
    keys = list(b) + [k for k in a if k not in b]
    return [(k, a.get(k, _UNSET), b.get(k, _UNSET)) for k in keys if a.get(k, _UNSET) != b.get(k, _UNSET)]


def fmt_value(value: Any) -> str:
    """A config value as it would be typed after ``--set key=`` (``(unset)`` for a key one side lacks)."""
    if value is _UNSET:
        return "(unset)"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value).replace('"', "") if isinstance(value, (list, dict)) else json.dumps(value)


def describe_changes(changes: Sequence[tuple[str, Any, Any]]) -> str:
    """``key: old -> new; ...`` (one line)."""
    return "; ".join(f"{k}: {fmt_value(a)} -> {fmt_value(b)}" for k, a, b in changes)
