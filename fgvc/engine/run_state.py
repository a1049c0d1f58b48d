"""What state a run directory is in, read without ever failing with a traceback.

Every command that takes a run (evaluate, embed, visualize, explain, predict, report, export, quantize, prune,
extend, ``train --resume``) finds its checkpoint through :func:`locate_checkpoint`, which tells apart

* a path that does not exist, and a folder that is not a run directory at all (:data:`RUN_HOLDS` says what one
  holds);
* a run whose training stopped before its first checkpoint (``config.yaml`` and ``train.log`` but no
  ``checkpoints/``): nothing to load, train it again;
* a run without the checkpoint asked for (``best.pt`` is written only when a validation split improved);

and reads the run's other files leniently: :func:`read_final` (``final.json``: absent while a run trains or after
it was interrupted, or damaged) and :func:`read_saved_config` (``config.yaml``: missing or not YAML) return the
content or a one-line note of what is wrong, for the command to report what exists and say what is missing.
A damaged checkpoint is caught by :func:`fgvc.engine.checkpoint.load_checkpoint` (header, checksum, format tag).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from fgvc.errors import CheckpointError, ConfigError, UserError
from fgvc import config
from fgvc.engine.checkpoint import load_checkpoint

__all__ = ["RUN_HOLDS", "is_run_dir", "locate_checkpoint", "read_final", "read_saved_config", "not_finished_note",
           "init_backbone_from"]

RUN_HOLDS = ("a run directory (what python -m fgvc.train writes) holds config.yaml, train.log and "
             "checkpoints/last.pt (plus best.pt with a validation split), and once finished metrics.jsonl and "
             "final.json")
_MARKERS = ("config.yaml", "checkpoints", "train.log", "metrics.jsonl", "final.json", "environment.json")


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a folder that fgvc.train started a run in (it holds any of a run's own files)."""
    return path.is_dir() and any((path / name).exists() for name in _MARKERS)


def _contents(path: Path, limit: int = 5) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    except OSError as exc:
        return f"it cannot be listed ({exc.strerror})"
    if not names:
        return "it is empty"
    more = f", ... ({len(names)} entries)" if len(names) > limit else ""
    return "it holds " + ", ".join(names[:limit]) + more


def locate_checkpoint(target: str | Path, checkpoint: str = "last") -> tuple[Path, Path]:
    """``(run_dir, checkpoint file)`` of a run directory's ``checkpoints/<checkpoint>.pt`` or of a checkpoint file
    given directly, else a :class:`CheckpointError` naming the path and what is wrong (see the module doc)."""
    target = Path(target)
    if not target.exists():
        raise CheckpointError(f"no such run directory or checkpoint: {target}")
    if not target.is_dir():
        return target.parent.parent, target
    ckpt = target / "checkpoints" / f"{checkpoint}.pt"
    if ckpt.is_file():
        return target, ckpt
    if not is_run_dir(target):
        raise CheckpointError(f"{target} is not a run directory ({_contents(target)}): {RUN_HOLDS}; give the folder "
                              "fgvc.train wrote (its --output, e.g. runs/cub200_wsdan-20261123-171500)")
    found = sorted(p.name for p in (target / "checkpoints").glob("*.pt")) if (target / "checkpoints").is_dir() else []
    if not found:
        raise CheckpointError(
            f"{target} has no checkpoint: its training stopped before the first one (checkpoints/last.pt is written "
            f"at the end of each epoch), so there is no model to load; train it again with python -m fgvc.train "
            f"{target / 'config.yaml'} --output {target}")
    if checkpoint == "best":
        raise CheckpointError(
            f"{target} has no checkpoints/best.pt (it has {', '.join(found)}): best.pt is the epoch with the best "
            "validation top-1, and this run had no validation split (data.val_split: null) or has not validated "
            "an epoch yet; use --checkpoint last")
    raise CheckpointError(f"{target} has no checkpoints/{checkpoint}.pt (it has {', '.join(found)}); use "
                          f"--checkpoint {Path(found[0]).stem}")


def not_finished_note(run_dir: Path) -> str:
    """Why a run has no final.json: still training, or interrupted (and how to finish it)."""
    return (f"{run_dir} has no final.json: the run did not finish (interrupted, or still training); "
            f"python -m fgvc.train --resume {run_dir} finishes it")


def read_final(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(final.json's metrics, None)``, or ``(None, note)`` saying why there are none: the run did not finish, or
    the file is not a JSON object (damaged)."""
    path = Path(run_dir) / "final.json"
    if not path.is_file():
        return None, not_finished_note(Path(run_dir))
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, (f"{path} is damaged ({_why(exc)}); python -m fgvc.evaluate {run_dir} recomputes the test "
                      f"metrics, python -m fgvc.train --resume {run_dir} rewrites it")
    if not isinstance(data, dict):
        return None, f"{path} is damaged (it holds a {type(data).__name__}, not an object of metrics)"
    return data, None


def read_saved_config(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(config.yaml as a validated config, None)`` or ``(None, note)`` when it is missing or unreadable."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return None, f"{path} is missing"
    try:
        return config.load_recipe(path)[0], None
    except (UserError, OSError, UnicodeDecodeError) as exc:
        return None, str(exc) if isinstance(exc, UserError) else f"{path} cannot be read ({_why(exc)})"


def _why(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    return " ".join(str(text).split())[:200]


def init_backbone_from(method: nn.Module, target: str | Path, checkpoint: str = "last") -> int:
    """Copy the backbone weights of the run ``target`` (``model.init_from``, e.g. a SimCLR run) into ``method.backbone``;
    the rest of ``method`` (its heads) keeps its fresh initialisation. Returns the number of tensors copied. A
    :class:`ConfigError` names the first tensor whose shape differs, or what the run's backbone lacks (another
    architecture)."""
    _, ckpt = locate_checkpoint(target, checkpoint)
    state = load_checkpoint(ckpt)
    saved = {k[len("backbone."):]: v for k, v in (state.get("model") or {}).items() if k.startswith("backbone.")}
    theirs = (state.get("config") or {}).get("model", {}).get("backbone", "?")
    if not saved:
        raise ConfigError(f"model.init_from: {ckpt} holds no backbone weights (no 'backbone.*' tensors); give a run "
                          "directory of python -m fgvc.train")
    own = method.backbone.state_dict()
    missing = [k for k in own if k not in saved]
    if missing:
        raise ConfigError(f"model.init_from: the backbone of {target} (model.backbone '{theirs}') lacks {len(missing)} "
                          f"tensor(s) of this recipe's backbone, e.g. '{missing[0]}': use a run with the same "
                          "model.backbone")
    for k, v in own.items():
        if saved[k].shape != v.shape:
            raise ConfigError(f"model.init_from: backbone tensor '{k}' is {tuple(saved[k].shape)} in {target} "
                              f"(model.backbone '{theirs}') but {tuple(v.shape)} here: use a run with the same "
                              "model.backbone and backbone_args")
    method.backbone.load_state_dict({k: saved[k] for k in own})
    return len(own)
