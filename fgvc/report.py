"""``python -m fgvc.report RUN_DIR [--output report.html] [--split test] [--checkpoint last|best] [--cam gradcam|...|none]
[--projection tsne|umap|pca] [--worst 12] [--pairs 10] [--no-audit] [--published CSV] [--set k=v ...]``

One self-contained HTML page about a trained run, to open from disk or send as an attachment (every image and plot
inlined, no network; a CUB run's page is well under 10 MB): the recipe; the environment it trained in; the final
metrics next to the published number of the same method and data set (``benchmarks/published.csv``); the training
curves with the over/underfitting verdict of :mod:`fgvc.metrics.fit_verdict`; a sortable per-class accuracy table; the
confusion matrix as a heat map and the most-confused species pairs, each with an image of the mistake and a
typical image of the other species; the most confident mistakes with their Grad-CAM (:mod:`fgvc.vis.cam`); the
t-SNE map of the embeddings (:mod:`fgvc.vis.projection`); the data audit's summary (:mod:`fgvc.data.audit`:
duplicates, train/test leakage, size outliers).

Predictions, embeddings and CAMs come from one :class:`~fgvc.engine.inference.TrainedRun` pass over the split;
the sections and the page are built by :mod:`fgvc.vis.run_report` (the comparison with the published table by
:func:`fgvc.benchmarking.published.compare_run`). Default output: ``RUN/report.html``.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from fgvc.benchmarking.published import compare_run
from fgvc.cli import add_output, add_run_arguments, command, load_run, split_of
from fgvc.errors import ConfigError
from fgvc.vis.run_report import SECTION_TITLES, ReportOptions, build_page

__all__ = ["main", "SECTION_TITLES"]

PUBLISHED = Path(__file__).resolve().parents[1] / "benchmarks" / "published.csv"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fgvc-report", description="Write one self-contained HTML report of a run.")
    add_run_arguments(ap)
    add_output(ap, "HTML file to write (default RUN/report.html)", metavar="FILE.html", old_out=True)
    ap.add_argument("--cam", default="gradcam", choices=["gradcam", "gradcam++", "scorecam", "attention", "none"],
                    help="heat maps of the worst mistakes (default gradcam; none skips them)")
    ap.add_argument("--projection", default="tsne", choices=["tsne", "umap", "pca", "none"],
                    help="embedding map (default tsne; none skips it)")
    ap.add_argument("--worst", type=int, default=12, help="most confident mistakes shown (default 12)")
    ap.add_argument("--pairs", type=int, default=10, help="most-confused class pairs shown (default 10)")
    ap.add_argument("--no-audit", action="store_true", help="skip the data audit (duplicates, leakage, sizes)")
    ap.add_argument("--published", default=str(PUBLISHED), help="published results table (default the repo's)")
    return ap.parse_args(argv)


@command(parse_args)
def main(args: argparse.Namespace) -> None:
    if args.worst < 0 or args.pairs < 0:
        raise ConfigError("--worst and --pairs must be >= 0")
    target = Path(args.target)
    if target.suffix in (".yaml", ".yml"):
        raise ConfigError(f"{target} is a recipe: a report needs a trained run; train it first with "
                          f"python -m fgvc.train {target}")
    run = load_run(args, target)
    out = Path(args.output) if args.output else run.run_dir / "report.html"
    opts = ReportOptions(split=split_of(run, args.split), published=args.published, cam=args.cam,
                         projection=args.projection, worst=args.worst, pairs=args.pairs, audit=not args.no_audit)
    comparison = compare_run(run.run_dir, args.published)
    with tempfile.TemporaryDirectory() as tmp:
        page = build_page(run, opts, comparison, Path(tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    print(f"{out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    raise SystemExit(main())
