"""The computing part of ``python -m fgvc.bench report``: runs next to the published numbers.

:func:`compare_runs` reads run directories and the published table and returns a :class:`Comparison`:
one :class:`ComparedRun` per run (our metrics, the matched published row, the gap, the subset / unfinished flags)
and the published rows cited, numbered in order of first citation; :func:`compare_run` gives one run's row.
Writing it as Markdown and drawing the bar chart is :mod:`fgvc.benchmarking.published_report`'s job; nothing here
imports matplotlib.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from fgvc.engine.rundir import read_metrics
from fgvc.errors import BenchError

__all__ = [
    "PUBLISHED_COLUMNS", "DATASET_ALIASES", "norm_dataset", "norm_backbone", "load_published", "method_key",
    "match_published", "read_run", "is_subset", "ComparedRun", "Comparison", "summarize_run",
    "build_comparison", "compare_runs", "compare_run",
]

PUBLISHED_COLUMNS = ("method", "backbone", "dataset", "img_size", "top1", "source", "venue", "notes")
DATASET_ALIASES = {"cub": "cub200", "cub200": "cub200", "cub2002011": "cub200", "flowers": "flowers102",
                   "flowers102": "flowers102", "oxfordflowers102": "flowers102"}


# ---------------------------------------------------------------- published
def _norm(name: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name or "").lower())


def norm_dataset(name: Any) -> str:
    key = _norm(name)
    return DATASET_ALIASES.get(key, key)


def norm_backbone(name: Any) -> str:
    """``resnet50.a1_in1k`` -> ``resnet50``; ``VGG-16`` -> ``vgg16`` (the timm tag after '.' is dropped)."""
    return _norm(str(name or "").split(".")[0])


def load_published(path: str | Path) -> list[dict[str, Any]]:
    """Rows of the published-results CSV; ``top1`` a float or None (paper gives no number)."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"published results table not found: {path}; pass --published PATH "
                         "(the repository's is benchmarks/published.csv)")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in PUBLISHED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise BenchError(f"{path} lacks the column(s) {missing}; its header must be {','.join(PUBLISHED_COLUMNS)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            top1 = (row.get("top1") or "").strip()
            try:
                row["top1"] = float(top1) if top1 else None
            except ValueError:
                raise BenchError(f"{path}:{line}: top1 '{top1}' is not a number (leave it empty when unknown)") from None
            rows.append(row)
    return rows


def method_key(cfg: dict[str, Any]) -> str:
    """The published table's method name for a run: the registry name, ``bcnn_compact`` for compact B-CNN."""
    name = str(cfg.get("model", {}).get("name", "")).lower()
    if name == "bcnn" and (cfg["model"].get("args") or {}).get("pooling") == "compact":
        return "bcnn_compact"
    return name


def match_published(rows: list[dict[str, Any]], method: str, backbone: str, dataset: str) -> tuple[dict | None, str]:
    """(row, how): the published row of the same method and data set, same backbone preferred.

    ``how`` is ``backbone`` (same backbone), ``other-backbone`` (first row with a number for the method and
    data set), ``no-number`` (the paper reports none, e.g. ImageNet only) or ``none``.
    """
    ds = norm_dataset(dataset)
    same = [r for r in rows if _norm(r["method"]) == _norm(method) and norm_dataset(r["dataset"]) == ds]
    numbered = [r for r in same if r["top1"] is not None]
    for r in numbered:
        if norm_backbone(r["backbone"]) == norm_backbone(backbone):
            return r, "backbone"
    if numbered:
        return numbered[0], "other-backbone"
    if same:
        return same[0], "no-number"
    return None, "none"


# --------------------------------------------------------------------- runs
def read_run(run_dir: str | Path) -> dict[str, Any]:
    """config.yaml, final.json (None when absent) and metrics.jsonl rows of one run directory."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise BenchError(f"{run_dir} is not an fgvc run directory (no config.yaml); pass the folder that "
                         "fgvc.train created, e.g. runs/baseline-cub200-20250101-120000")
    try:
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BenchError(f"{cfg_path} is not valid YAML: {exc}") from exc
    final = None
    if (run_dir / "final.json").is_file():
        try:
            final = json.loads((run_dir / "final.json").read_text())
        except json.JSONDecodeError as exc:
            raise BenchError(f"{run_dir / 'final.json'} is not valid JSON ({exc}); re-run fgvc.evaluate") from exc
    return {"dir": run_dir, "cfg": cfg, "final": final, "metrics": read_metrics(run_dir)}


def is_subset(cfg: dict[str, Any]) -> bool:
    """True for a subset / mini / synthetic data set, whose accuracy is not comparable with the papers'."""
    data = cfg.get("data", {})
    return "mini" in str(data.get("root", "")).lower() or str(data.get("name", "")).lower() == "synthetic"


# ------------------------------------------------------------------- report
@dataclass(frozen=True)
class ComparedRun:
    """One run of the report: our numbers, the matched published row (``match`` says how) and the gap."""

    run: str  # the run directory's name
    method: str
    backbone: str
    dataset: str
    root: str
    img_size: Any
    epochs: int  # final.json's, else the epochs metrics.jsonl has rows for (an unfinished run)
    steps: int | None
    top1: float | None
    top5: float | None
    mean_class_acc: float | None
    train_seconds: float | None
    images_per_s: float | None  # mean of metrics.jsonl's images_per_s
    published: float | None  # the matched row's top-1
    published_row: dict[str, Any] | None
    match: str  # backbone | other-backbone | no-number | none (see match_published)
    gap: float | None  # ours - published (shown only when ``comparable``)
    subset: bool  # subset / mini / synthetic data: not comparable with the papers
    finished: bool  # final.json exists
    cite: int | None = None  # 1-based number of published_row in Comparison.sources, None when not cited

    @property
    def img_size_differs(self) -> bool:
        """A number was matched, and the paper trained at another image size than this run."""
        pub = self.published_row
        return (self.match in ("backbone", "other-backbone") and bool(pub and pub.get("img_size"))
                and str(pub["img_size"]) != str(self.img_size))

    @property
    def caveats(self) -> list[str]:
        """Why this run's top-1 is not comparable with the matched published number ([] when it is, or when no
        number was matched): a subset / mini / synthetic data set, another backbone, another image size, an
        unfinished run."""
        if self.published is None:
            return []
        pub = self.published_row or {}
        return [c for c, on in (
            ("this run's data is a subset / mini / synthetic set, not the paper's full test set", self.subset),
            (f"the paper used backbone {pub.get('backbone')}, this run {self.backbone}", self.match != "backbone"),
            (f"the paper trained at {pub.get('img_size')} px, this run at {self.img_size} px", self.img_size_differs),
            ("the run did not finish (no final.json)", not self.finished)) if on]

    @property
    def comparable(self) -> bool:
        """A published number was matched and this run has its setting (full data, backbone, image size, done):
        only then is ``gap`` worth showing."""
        return self.published is not None and self.gap is not None and not self.caveats


@dataclass(frozen=True)
class Comparison:
    """The runs next to the published numbers (``python -m fgvc.bench report``), with the sources they cite."""

    rows: list[ComparedRun]
    sources: list[dict[str, Any]] = field(default_factory=list)  # published rows cited, [1], [2], ... in order
    published_csv: str = ""

    @property
    def any_subset(self) -> bool:
        return any(r.subset for r in self.rows)

    @property
    def any_unfinished(self) -> bool:
        return any(not r.finished for r in self.rows)


def summarize_run(run: dict[str, Any], published: list[dict[str, Any]]) -> ComparedRun:
    """One :func:`read_run` result matched to ``published`` (not yet numbered for citation)."""
    cfg, final, rows = run["cfg"], run["final"] or {}, run["metrics"]
    data, model = cfg.get("data", {}), cfg.get("model", {})
    ips = [r["images_per_s"] for r in rows if isinstance(r.get("images_per_s"), (int, float))]
    method = method_key(cfg)
    pub, how = match_published(published, method, model.get("backbone", ""), data.get("name", ""))
    ours = final.get("top1")
    pub_top1 = pub["top1"] if pub else None
    return ComparedRun(
        run=run["dir"].name, method=method, backbone=model.get("backbone", ""),
        dataset=data.get("name", ""), root=data.get("root", ""), img_size=data.get("img_size"),
        epochs=final.get("epochs", 1 + max((int(r.get("epoch", 0)) for r in rows), default=-1)),
        steps=final.get("steps"), top1=ours, top5=final.get("top5"), mean_class_acc=final.get("mean_class_acc"),
        train_seconds=final.get("train_seconds"), images_per_s=sum(ips) / len(ips) if ips else None,
        published=pub_top1, published_row=pub, match=how,
        gap=ours - pub_top1 if ours is not None and pub_top1 is not None else None,
        subset=is_subset(cfg), finished=run["final"] is not None,
    )


def build_comparison(runs: list[dict[str, Any]], published: list[dict[str, Any]],
                     published_csv: str = "") -> Comparison:
    """Rows of :func:`read_run` results matched to ``published``; the cited rows numbered in row order."""
    rows, sources = [], []
    for run in runs:
        row = summarize_run(run, published)
        if row.match != "none":  # a number, or the paper's reason for giving none: both are cited
            if row.published_row not in sources:
                sources.append(row.published_row)
            row = replace(row, cite=sources.index(row.published_row) + 1)
        rows.append(row)
    return Comparison(rows=rows, sources=sources, published_csv=published_csv)


def compare_runs(run_dirs: list[str | Path], published_csv: str | Path) -> Comparison:
    """Read the run directories and the published table; the :class:`Comparison` to write or draw."""
    published = load_published(published_csv)
    return build_comparison([read_run(d) for d in run_dirs], published, str(published_csv))


def compare_run(run_dir: str | Path, published_csv: str | Path) -> ComparedRun | str:
    """One run next to the published table (``python -m fgvc.report``'s Results section), or why not, as a
    sentence: the run or the table cannot be read."""
    try:
        return summarize_run(read_run(run_dir), load_published(published_csv))
    except BenchError as exc:
        return str(exc)
