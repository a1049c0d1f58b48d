"""Recipes: YAML loading with ``_base_`` inheritance, dotted overrides and validation.

A recipe is a YAML mapping. ``_base_: [a.yaml, b.yaml]`` (paths relative to the recipe) are
merged first, in order, then the recipe itself; mappings merge key by key, anything else
replaces. ``--set train.lr=0.01`` overrides one dotted key (the value is parsed as YAML).
The result is checked against :data:`DEFAULTS` (the schema is in :mod:`fgvc.config_schema`): an unknown key names the key, the file it
came from and the closest valid key; a wrong type names the expected type; impossible values
(negative lr, crop larger than resize) name the key and the fix. Free-form sections
(``data.args``, ``model.args``, ``loss.args``) are checked later against the signature of
the component they configure (see :mod:`fgvc.registry`).

Values a recipe leaves to be derived are resolved by one function each, defined beside the defaults in
:mod:`fgvc.config_schema` and exported here, which every reader calls (the stored config, and so a run directory's
``config.yaml``, keeps the recipe's own values): :func:`resolved_resize` (``data.resize: null``),
:func:`input_geometry` (crop and resize at a method's input scale), :func:`eval_batch_size` (``eval.batch_size: 0``,
per process), :func:`train_batch_per_process` and :func:`scored_split` (``--split`` or ``data.test_split``).
"""
from __future__ import annotations

import copy
import logging
import re
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from fgvc.config_schema import (
    AUX_KEYS, AUX_REQUIRED, CHOICES, DEFAULTS, DISTILL_DEFAULTS, DISTILL_KEYS, FREE_FORM, RANGES, NoneType, STAGE_KEYS,
    STAGE_REQUIRED, TYPES, crop_warnings, eval_batch_size, input_geometry, resolved_resize, scored_split,
    train_batch_per_process, where as _where,
)
from fgvc.errors import ConfigError
from fgvc.registry import closest

__all__ = [
    "ConfigError", "DEFAULTS", "load_recipe", "apply_overrides", "validate", "migrate", "from_saved", "get", "dump",
    "resolved_resize", "input_geometry", "crop_warnings", "train_batch_per_process", "eval_batch_size", "scored_split",
]

log = logging.getLogger("fgvc")


class RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no Python tags) that also reads ``1e-3`` as a float: YAML 1.1, which PyYAML follows,
    needs a dot (``1.0e-3``), so ``--set train.lr=1e-3`` would otherwise be the string '1e-3'."""


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    """YAML text (a recipe, a ``--set`` value) through :class:`RecipeLoader`."""
    loader = RecipeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: what is wrong and where (PyYAML's own message spans several lines)."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    hint = "; Python tags (!!python/...) are refused: recipes are read with a safe loader" if "tag" in problem else ""
    return " ".join(f"{problem}{where}{hint}".split())


def read_yaml_file(path: Path, what: str, expect: type, holds: str, missing: str) -> Any:
    """The YAML document of ``path`` (safe loader; empty: ``expect()``), which must be an ``expect``; else a one-line
    ConfigError: ``missing`` when there is no file, the line and column of a syntax error, or what ``what`` must
    hold (``holds``, e.g. "a mapping of keys")."""
    if not path.is_file():
        raise ConfigError(missing)
    try:
        data = parse_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} is not valid YAML: {_yaml_problem(exc)}") from exc
    data = expect() if data is None else data
    if not isinstance(data, expect):
        raise ConfigError(f"{what} must hold {holds}, not a {type(data).__name__}")
    return data


def _merge(dst: dict, src: dict, origin: dict[str, str], source: str, prefix: str = "") -> None:
    for key, value in src.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value, origin, source, dotted + ".")
        else:
            dst[key] = copy.deepcopy(value)
        origin[dotted] = source


def _load(path: Path, origin: dict[str, str], seen: tuple[Path, ...]) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"recipe inheritance loops: {' -> '.join(map(str, seen + (path,)))}")
    raw = read_yaml_file(path, str(path), dict, "a mapping of keys", f"recipe not found: {path}")
    bases = raw.pop("_base_", [])
    bases = [bases] if isinstance(bases, str) else bases
    out: dict[str, Any] = {}
    for base in bases:
        _merge(out, _load(path.parent / base, origin, seen + (path,)), origin, str(path.parent / base))
    _merge(out, raw, origin, str(path))
    return out


def migrate(tree: dict[str, Any]) -> list[str]:
    """Rewrite, in place, the keys that older fgvc versions wrote (recipes and run directories' config.yaml and
    checkpoints keep working); returns one note per change.

    * ``train.cpu_amp`` is gone: ``train.amp`` is the one key (``auto`` = bf16 on CUDA, fp32 on the CPU, which
      is what ``amp: bf16`` without ``cpu_amp`` meant; ``bf16`` now means bf16 on every device).
    * ``model.args.backbone_args`` is now ``model.backbone_args`` (the backbone factory reads it, not the method).
    * the synthetic set's ``data.args.img_size`` (the size images are rendered at) is now
      ``data.args.render_size``, so it is not confused with ``data.img_size`` (the network's input crop).
    """
    notes: list[str] = []
    train, model, data = (tree.get(k) if isinstance(tree.get(k), dict) else {} for k in ("train", "model", "data"))
    if "cpu_amp" in train:
        cpu_amp = train.pop("cpu_amp")
        if train.get("amp") == "bf16" and not cpu_amp:
            train["amp"] = "auto"
            notes.append("train.amp: bf16 with train.cpu_amp: false is now train.amp: auto (bf16 on CUDA, fp32 on the CPU)")
        else:
            notes.append("train.cpu_amp was removed: train.amp alone chooses (auto, none, bf16, fp16)")
    args = model.get("args") if isinstance(model.get("args"), dict) else {}
    if "backbone_args" in args:
        if model.get("backbone_args"):
            raise ConfigError("model.backbone_args and the old model.args.backbone_args are both set; keep model.backbone_args")
        model["backbone_args"] = args.pop("backbone_args")
        notes.append("model.args.backbone_args is now model.backbone_args")
    dargs = data.get("args") if isinstance(data.get("args"), dict) else {}
    if data.get("name") == "synthetic" and "img_size" in dargs:
        dargs["render_size"] = dargs.pop("img_size")
        notes.append("the synthetic set's data.args.img_size is now data.args.render_size (data.img_size is the crop)")
    return notes


def from_saved(saved: dict[str, Any], overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The config stored in a checkpoint, as this version reads it: legacy keys migrated, keys added since then at
    their defaults, ``overrides`` applied, validated."""
    tree = copy.deepcopy(saved)
    migrate(tree)
    cfg = copy.deepcopy(DEFAULTS)
    _merge(cfg, tree, {}, "")
    apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg


def load_recipe(path: str | Path, overrides: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, str]]:
    """Recipe + bases + overrides, merged over DEFAULTS and validated. Returns (config, origin)."""
    origin: dict[str, str] = {}
    recipe = _load(Path(path), origin, ())
    for note in migrate(recipe):
        log.warning(f"{path}: {note}; read as such (update the recipe to silence this)")
    cfg = copy.deepcopy(DEFAULTS)
    _check_keys(recipe, DEFAULTS, origin)
    _merge(cfg, recipe, {}, "")
    apply_overrides(cfg, overrides, origin)
    validate(cfg, origin)
    return cfg, origin


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key.sub=value, e.g. train.lr=0.01")
    key, value = item.split("=", 1)
    try:
        return key.strip(), parse_yaml(value) if value != "" else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{item}': value is not valid YAML ({_yaml_problem(exc)})") from exc


def apply_overrides(cfg: dict[str, Any], overrides: Iterable[str], origin: dict[str, str] | None = None) -> None:
    for item in overrides:
        key, value = parse_override(item)
        parts = key.split(".")
        node, schema = cfg, DEFAULTS
        for i, part in enumerate(parts):
            dotted = ".".join(parts[: i + 1])
            free = any(dotted.startswith(f + ".") for f in FREE_FORM)
            if not free and (not isinstance(schema, dict) or part not in schema):
                valid = _all_keys(DEFAULTS)
                raise ConfigError(f"--set {key}: unknown key '{key}'{closest(key, valid)}")
            if i == len(parts) - 1:
                node[part] = value
            else:
                if node.get(part) is None:  # absent, or a null section (--set distill.teacher=... fills distill)
                    node[part] = {}
                node = node[part]
                schema = schema.get(part, {}) if isinstance(schema, dict) else {}
        if origin is not None:
            origin[key] = f"--set {item}"


def leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train.lr": 0.01, ...}``: every leaf of a nested config by its dotted key (an empty section is a leaf)."""
    if not isinstance(tree, dict) or (not tree and prefix):
        return {prefix[:-1]: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(leaves(v, f"{prefix}{k}."))
    return out


def _all_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k, v in tree.items():
        keys.append(prefix + k)
        if isinstance(v, dict) and (prefix + k) not in FREE_FORM:
            keys += _all_keys(v, prefix + k + ".")
    return keys


def _check_keys(tree: dict[str, Any], schema: dict[str, Any], origin: dict[str, str], prefix: str = "") -> None:
    for key, value in tree.items():
        dotted = prefix + key
        if key not in schema:
            raise ConfigError(
                f"unknown recipe key '{dotted}'{_where(origin, dotted)}{closest(key, schema)}; "
                f"valid keys here: {', '.join(sorted(schema))}"
            )
        if isinstance(schema[key], dict) and dotted not in FREE_FORM:
            if not isinstance(value, dict):
                raise ConfigError(f"'{dotted}'{_where(origin, dotted)} must be a mapping, got {value!r}")
            _check_keys(value, schema[key], origin, dotted + ".")


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def _check_types(cfg: dict[str, Any], origin: dict[str, str], schema: dict[str, Any] = DEFAULTS, prefix: str = "") -> None:
    for key, default in schema.items():
        dotted, value = prefix + key, cfg.get(key)
        if isinstance(default, dict) and dotted not in FREE_FORM:
            _check_types(value, origin, default, dotted + ".")
            continue
        types = TYPES.get(dotted) or (type(default),)
        if not _type_ok(value, types):
            names = " or ".join("null" if t is NoneType else t.__name__ for t in types)
            raise ConfigError(f"'{dotted}'{_where(origin, dotted)} must be {names}, got {value!r} ({type(value).__name__})")
        if dotted in CHOICES and value not in CHOICES[dotted]:
            raise ConfigError(
                f"'{dotted}'{_where(origin, dotted)} must be one of {list(CHOICES[dotted])}, got {value!r}"
                f"{closest(str(value), map(str, CHOICES[dotted]))}"
            )


def _check_entries(entries: dict[str, Any], keys: dict[str, type], at: Callable[[str], str]) -> None:
    """Each key of ``entries`` one of ``keys`` and of its type; ``at(key)`` names the key in the error."""
    for k, v in entries.items():
        if k not in keys:
            raise ConfigError(f"{at(k)} is not a valid key{closest(k, keys)}; valid: {sorted(keys)}")
        if not _type_ok(v, (keys[k],)):
            raise ConfigError(f"{at(k)} must be {keys[k].__name__}, got {v!r}")


def _check_list(items: list, keys: dict[str, type], required: tuple[str, ...], what: str,
                origin: dict[str, str]) -> None:
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"{what}[{i}]{_where(origin, what)} must be a mapping with {' and '.join(required)}, "
                              f"got {item!r}")
        _check_entries(item, keys, lambda k: f"'{what}[{i}].{k}'")
        absent = [k for k in required if k not in item]
        if absent:
            raise ConfigError(f"{what}[{i}]{_where(origin, what)} = {item!r} lacks {' and '.join(absent)}; each entry "
                              f"needs {', '.join(required)} (e.g. {{name: finetune, epochs: 10}} for a stage)")


def _check_stages(cfg: dict[str, Any], origin: dict[str, str]) -> None:
    """Stages own the epoch count: ``train.epochs`` is derived from them, and a different explicit value is an error."""
    tr = cfg["train"]
    _check_list(tr["stages"], STAGE_KEYS, STAGE_REQUIRED, "train.stages", origin)
    for i, st in enumerate(tr["stages"]):
        if st["epochs"] < 1:
            raise ConfigError(f"train.stages[{i}].epochs must be >= 1, got {st['epochs']}")
        if st.get("lr", 1.0) <= 0:
            raise ConfigError(f"train.stages[{i}].lr must be > 0, got {st['lr']}")
    if not tr["stages"]:
        return
    total = sum(st["epochs"] for st in tr["stages"])
    if "train.epochs" in origin and tr["epochs"] != total:
        plan = " + ".join(f"{st['name']} {st['epochs']}" for st in tr["stages"])
        raise ConfigError(
            f"'train.epochs'{_where(origin, 'train.epochs')} = {tr['epochs']} has no effect: this recipe trains in "
            f"train.stages ({plan} = {total} epochs){_where(origin, 'train.stages')}. Set each stage's epochs (e.g. "
            "--set 'train.stages=[{name: main, epochs: 3}]'), or drop train.epochs")
    tr["epochs"] = total  # what config.yaml records


def validate(cfg: dict[str, Any], origin: dict[str, str] | None = None) -> None:
    """Keys, types, choices and impossible values; raises ConfigError."""
    origin = origin or {}
    _check_keys(cfg, DEFAULTS, origin)
    _check_types(cfg, origin)
    data = cfg["data"]
    _check_stages(cfg, origin)
    _check_list(cfg["loss"]["aux"], AUX_KEYS, AUX_REQUIRED, "loss.aux", origin)
    _check_distill(cfg, origin)
    protocols = cfg["eval"]["protocols"]
    if not (isinstance(protocols, list) and all(isinstance(x, str) for x in protocols) and "classification" in protocols):
        raise ConfigError(f"'eval.protocols'{_where(origin, 'eval.protocols')} = {protocols!r}: a list of evaluation "
                          "protocol names that includes classification (it writes final.json), e.g. [classification]")

    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ConfigError(f"'{key}'{_where(origin, key)} = {get(cfg, key)!r}: {msg}")

    _check_ranges(cfg, origin)
    scale = data["augment"]["rrc_scale"]
    need(len(scale) == 2 and all(_type_ok(v, (float,)) for v in scale) and 0 < scale[0] <= scale[1] <= 1,
         "data.augment.rrc_scale", "the RandomResizedCrop's area range [min, max] needs 0 < min <= max <= 1, e.g. "
         "[0.35, 1.0]")
    _check_sampler(cfg, origin)
    if data["resize"] is not None:
        need(
            data["resize"] >= data["img_size"], "data.resize",
            f"the crop data.img_size={data['img_size']} is larger than the resize; set data.resize >= data.img_size "
            f"or data.resize=null (derived from data.crop_pct: {resolved_resize(data)})",
        )


def _check_ranges(cfg: dict[str, Any], origin: dict[str, str]) -> None:
    """Every key of :data:`fgvc.config_schema.RANGES` (a number, or null where its type allows) within its range."""
    for key, allowed in RANGES.items():
        value = get(cfg, key)
        if value is None or allowed.allows(value):
            continue
        null = " or null" if NoneType in TYPES.get(key, ()) else ""
        note = f" ({allowed.note})" if allowed.note else ""
        raise ConfigError(f"'{key}'{_where(origin, key)} = {value!r}: must be {allowed.text()}{null}{note}")


def _check_distill(cfg: dict[str, Any], origin: dict[str, str]) -> None:
    """``distill``: null, or ``teacher`` (a run directory, whose checkpoint fgvc.engine.distill checks when training
    starts: evaluating a distilled run never needs its teacher), ``alpha`` in [0, 1], ``temperature`` > 0,
    ``checkpoint`` last or best; keys left out are filled in at their defaults."""
    spec = cfg["distill"]
    if spec is None:
        return
    _check_entries(spec, DISTILL_KEYS, lambda k: f"'distill.{k}'{_where(origin, 'distill.' + k)}")
    if not spec.get("teacher"):
        raise ConfigError(f"'distill'{_where(origin, 'distill')} = {spec!r} lacks teacher: a trained run's directory, "
                          "e.g. distill: {teacher: runs/cub200_wsdan-20261123-171500, alpha: 0.5, temperature: 4.0}")
    spec.update({k: v for k, v in DISTILL_DEFAULTS.items() if k not in spec})
    for ok, key, msg in ((0 <= spec["alpha"] <= 1, "alpha", "the weight of the KD term must be in [0, 1] (e.g. 0.5)"),
                         (spec["temperature"] > 0, "temperature", "must be > 0 (e.g. 4.0; 1 = plain softmax)"),
                         (spec["checkpoint"] in ("last", "best"), "checkpoint", "the teacher's last or best")):
        if not ok:
            raise ConfigError(f"'distill.{key}'{_where(origin, 'distill.' + key)} = {spec[key]!r}: {msg}")


def _check_sampler(cfg: dict[str, Any], origin: dict[str, str]) -> None:
    """``data.sampler: pk``: ``P x K`` must be ``train.batch_size`` (``p: null`` derives ``P = batch_size / k``)."""
    if cfg["data"]["sampler"] != "pk":
        return
    batch, p, k = cfg["train"]["batch_size"], cfg["data"]["sampler_args"]["p"], cfg["data"]["sampler_args"]["k"]
    what = f"'data.sampler_args'{_where(origin, 'data.sampler_args')} = {{p: {'null' if p is None else p}, k: {k}}}"
    if k < 1 or (p is not None and p < 1):
        raise ConfigError(f"{what}: data.sampler=pk draws p classes x k images per batch, both must be >= 1 (metric "
                          "losses need p >= 2 and k >= 2), e.g. {p: 8, k: 4}")
    if (p is None and batch % k) or (p is not None and p * k != batch):
        fix = f"train.batch_size={p * k}, or p: null" if p is not None else f"train.batch_size={max(batch // k, 1) * k}"
        raise ConfigError(f"{what} with 'train.batch_size'{_where(origin, 'train.batch_size')} = {batch}: "
                          f"data.sampler=pk needs P x K = train.batch_size (p: null takes P = train.batch_size / k); "
                          f"set {fix}")


def get(cfg: dict[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def dump(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)
