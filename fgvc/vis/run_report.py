"""The sections of ``python -m fgvc.report``'s HTML run report, and the page (:func:`build_page`).

Each ``*_section`` builds one :class:`~fgvc.vis.report_html.Section` from what the run left on disk or from one
:class:`~fgvc.engine.inference.TrainedRun` pass over the split: the recipe; the environment it trained in; the final
metrics next to the published number (the comparison is computed by the caller with
:mod:`fgvc.benchmarking.published`, a layer above this one, and passed in); the training curves with the fit verdict
(:mod:`fgvc.metrics.fit_verdict`); the per-class accuracy table; the confusion matrix and the most-confused pairs with
an image of each mistake; the most confident mistakes with their class activation maps (:mod:`fgvc.vis.cam`); the
embedding map (:mod:`fgvc.vis.projection`); the data audit's summary (:mod:`fgvc.data.audit`). The page is assembled
by :func:`fgvc.vis.report_html.render_page`.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fgvc.data.audit import audit_dataset
from fgvc.engine.environment import environment
from fgvc.engine.inference import TrainedRun
from fgvc.engine.run_state import read_final
from fgvc.engine.rundir import curves_figure, read_metrics
from fgvc.metrics.accuracy import confusion_matrix
from fgvc.metrics.confusions import confused_pairs, pair_examples, per_class, worst_mistakes
from fgvc.metrics.fit_verdict import analyse_run
from fgvc.vis.audit_report import summary
from fgvc.vis.cam import cam_maps
from fgvc.vis.embedding_map import draw_embedding_map
from fgvc.vis.overlay import heat_overlay
from fgvc.vis.projection import project_embeddings
from fgvc.vis.report_figures import confusion_figure, photo, seen_by_model
from fgvc.vis.report_html import Markup, Section, esc, figure_uri, img, jpeg_uri, png_uri, render_page, table

__all__ = ["SECTION_TITLES", "ReportOptions", "build_page", "recipe_section", "environment_section",
           "results_section", "curves_section", "per_class_section", "confusion_section", "mistakes_section",
           "embedding_section", "audit_section"]

SECTION_TITLES = ("Recipe", "Environment", "Results", "Training curves", "Per-class accuracy", "Confusions",
                  "Worst mistakes", "Embedding map", "Data audit")


@dataclass(frozen=True)
class ReportOptions:
    """What the page shows (``python -m fgvc.report``'s flags, resolved)."""

    split: str  # the split evaluated
    published: str  # the published results table (CSV) the comparison came from
    cam: str = "gradcam"  # heat maps of the worst mistakes (none: skipped)
    projection: str = "tsne"  # embedding map (none: skipped)
    worst: int = 12  # most confident mistakes shown
    pairs: int = 10  # most-confused class pairs shown
    audit: bool = True  # the data audit's section (False: skipped)


def _log(msg: str) -> None:
    print(f"report: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- sections
def recipe_section(run_dir: Path) -> Section:
    text = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else "(no config.yaml)"
    return Section("Recipe", f"<p class='note'>{esc(run_dir / 'config.yaml')}: every key the run used, defaults "
                             f"included.</p><pre>{esc(text)}</pre>")


def environment_section(run_dir: Path, seconds: float | None) -> Section:
    path = run_dir / "environment.json"
    env, note = (_json_object(path), f"recorded by fgvc.train in {path.name}") if path.is_file() else (None, "")
    if env is None:
        env, note = environment(), (f"{path.name} is damaged" if path.is_file() else "the run did not record its "
                                    "environment (trained before fgvc wrote environment.json)") + \
            "; shown: the machine that wrote this report"
    pk = env.get("packages", {})
    rows = [("started", f"{env.get('started')}" + (" (resumed)" if env.get("resumed") else "")),
            ("machine", f"{env.get('platform')}, {env.get('cpu')}, {env.get('cpu_count')} CPUs"),
            ("device", f"{env.get('device')}" + (f" ({env.get('gpu')}, CUDA {env.get('cuda')})" if env.get("gpu")
                                                 else "") + f" x{env.get('world_size')}, "
                                                            f"{env.get('torch_threads')} torch threads"),
            ("python", env.get("python")),
            ("packages", ", ".join(f"{k} {v}" for k, v in pk.items() if v))]
    rows.append(("training seconds (final.json)", seconds))
    return Section("Environment", f"<p class='note'>{esc(note)}</p>" + table(["", "value"], rows))


def _json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it cannot be read or is not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def results_section(run_dir: Path, final: dict[str, Any], here: dict[str, Any], published_csv: str,
                    comparison: Any) -> Section:
    """final.json's metrics, this report's own pass, and ``comparison``: the run next to the published number (a
    :class:`fgvc.benchmarking.published.ComparedRun`) or, as a string, why there is none."""
    keys = ("top1", "top5", "mean_class_acc", "n_images", "epochs", "best_val_top1", "best_val_epoch", "tta_flip")
    rows = [(k, final.get(k)) for k in keys if k in final]
    body = "<h3>final.json (test split, final-epoch weights)</h3>" + table(["metric", "value"], rows)
    body += (f"<p>This report's own pass ({esc(here['what'])}, split <b>{esc(here['split'])}</b>): top-1 "
             f"<b>{here['top1']:.2f}%</b> over {here['n']} images.</p>")
    if isinstance(comparison, str):
        return Section("Results", body + f"<p class='note'>{esc(comparison)}</p>")
    row = comparison
    if row.published is None:
        body += (f"<p class='note'>No published top-1 for method <b>{esc(row.method)}</b> on "
                 f"<b>{esc(row.dataset)}</b> in {esc(published_csv)} (match: {esc(row.match)}).</p>")
    else:
        pub = row.published_row or {}
        body += table(["", "top-1", "backbone", "img size", "source"], [
            ("this run", row.top1, row.backbone, row.img_size, str(run_dir)),
            ("published", row.published, pub.get("backbone"), pub.get("img_size"),
             f"{pub.get('source')} ({pub.get('venue')})")])
        body += (f"<p class='good'>gap {row.gap:+.2f} points (same data, backbone and image size)</p>" if row.comparable
                 else "<p class='warn'>no gap shown: NOT comparable with the published setting (" +
                 esc("; ".join(row.caveats)) + ")</p>")
    return Section("Results", body)


def curves_section(run_dir: Path) -> Section:
    rows = read_metrics(run_dir)
    if not rows:
        return Section("Training curves", "<p class='note'>no metrics.jsonl in the run</p>")
    fit = analyse_run(run_dir)
    kind = {"overfitting": "bad", "underfitting": "warn", "good fit": "good"}.get(fit["verdict"], "warn")
    text = f"<b>{esc(fit['verdict'])}</b>"
    text += f" from epoch {fit['epoch']}" if fit.get("epoch") is not None else ""
    text += f" (train - val top-1 gap {fit['gap']:.1f} points)" if fit.get("gap") is not None else ""
    text += f": {esc(fit.get('reason', ''))}"
    remedies = "".join(f"<li>{esc(r)}</li>" for r in fit.get("remedies", []))
    return Section("Training curves", img(figure_uri(curves_figure(rows, run_dir.name, fit)), "training curves",
                                          "fig") + f"<p class='{kind}'>{text}</p>" +
                   (f"<p>Usual remedies:</p><ul>{remedies}</ul>" if remedies else ""))


def per_class_section(cm: np.ndarray, names: list[str]) -> Section:
    rows = [(r.index, r.name, r.n_images, r.correct, r.accuracy, r.confused_with, r.n_confused)
            for r in per_class(cm, names)]
    return Section("Per-class accuracy", "<p class='note'>click a column header to sort</p><div class='scroll'>" +
                   table(["#", "class", "images", "correct", "accuracy %", "most often taken for", "times"], rows,
                         sortable=True, numeric=[True, False, True, True, True, False, True]) + "</div>")


def confusion_section(cm: np.ndarray, names: list[str], probs: np.ndarray, targets: np.ndarray, ds: Any,
                      n_pairs: int) -> Section:
    body = img(figure_uri(confusion_figure(cm, names, "rows: true class, share of its test images")),
               "confusion matrix", "fig")
    pairs = confused_pairs(cm, n_pairs)
    if not pairs:
        return Section("Confusions", body + "<p class='good'>no mistakes on this split</p>")
    cards = []
    for rank, p in enumerate(pairs, 1):
        mistake, ref = pair_examples(probs, targets, p)
        thumbs = []
        for i, what in ((mistake, "mistake"), (ref, "reference")):
            pic = photo(ds.samples[i].path) if i is not None else None
            if pic is not None:
                t, pr = names[int(targets[i])], names[int(probs[i].argmax())]
                thumbs.append(img(jpeg_uri(pic), f"{what}: {t}", title=f"{what}: true {t}, predicted {pr} "
                                                                          f"({100 * probs[i].max():.0f}%)"))
        cards.append(f"<div class='card'><b>{rank}. {esc(names[p.a])} &harr; {esc(names[p.b])}</b><br>"
                     f"{p.a_as_b} &times; {esc(names[p.a])} read as {esc(names[p.b])}, {p.b_as_a} the other way"
                     f"<br>{''.join(thumbs)}<br><span class='note'>left: the mistake; right: a typical "
                     f"{esc(names[int(targets[ref])] if ref is not None else '')}</span></div>")
    return Section("Confusions", body + f"<h3>The {len(pairs)} most-confused pairs</h3><div class='cards'>"
                   + "".join(cards) + "</div>")


def mistakes_section(run: Any, ds: Any, probs: np.ndarray, targets: np.ndarray, names: list[str], n: int,
                     cam: str) -> Section:
    idx = worst_mistakes(probs, targets, n)
    if not idx:
        return Section("Worst mistakes", "<p class='good'>no mistakes on this split</p>")
    images = torch.stack([ds[i][0] for i in idx])  # B, 3, H, W
    preds = [int(probs[i].argmax()) for i in idx]
    heat, note = None, f"{cam} of the predicted class"
    if cam != "none":  # pytorch-grad-cam (optional) is imported inside cam_maps
        _log(f"{cam} maps of the {len(idx)} most confident mistakes")
        heat = cam_maps(run, images, preds, cam=cam)
    mean, std = run.data_config["mean"], run.data_config["std"]
    cards = []
    for b, i in enumerate(idx):
        seen = seen_by_model(images[b], mean, std)
        pics = img(jpeg_uri(seen), "input")
        if heat is not None:
            pics += img(jpeg_uri(heat_overlay(seen, heat[b])), f"{cam} overlay")
        cards.append(f"<div class='card'>{pics}<br><span class='ko'>predicted {esc(names[preds[b]])} "
                     f"({100 * probs[i, preds[b]]:.0f}%)</span><br>true {esc(names[int(targets[i])])} "
                     f"({100 * probs[i, int(targets[i])]:.0f}%)<br><span class='note'>"
                     f"{esc(Path(ds.samples[i].path).name)}</span></div>")
    text = "the wrong predictions made with the highest confidence, as the model saw them (resized, centre crop)"
    text += f"; right: {note}" if heat is not None else ""
    return Section("Worst mistakes", f"<p class='note'>{text}</p><div class='cards'>{''.join(cards)}</div>")


def embedding_section(emb: np.ndarray, targets: np.ndarray, names: list[str], cm: np.ndarray, method: str,
                      seed: int, tmp: Path) -> Section:
    _log(f"{method} of {len(emb)} embeddings")
    pts = project_embeddings(emb, method, seed)
    path = draw_embedding_map(pts, targets, names, tmp / "map.png", confused_pairs(cm, 5),
                              title=f"{method.upper() if method != 'tsne' else 't-SNE'} of the {len(emb)} test "
                                    "embeddings", pairs_note="test confusions")
    return Section("Embedding map", "<p class='note'>each dot an image, coloured by its true class; dashed lines "
                                    "join the centroids of the most-confused pairs</p>"
                   + img(png_uri(path.read_bytes()), "embedding map", "fig"))


def audit_section(cfg: dict[str, Any], run_dir: Path) -> Section:
    d = cfg["data"]
    saved = run_dir / "audit" / "summary.json"
    if saved.is_file():
        summ, where = json.loads(saved.read_text()), f"read from {saved}"
    else:
        _log(f"auditing {d['root']} (duplicates, leakage, sizes)")
        summ = summary(audit_dataset(d["name"], d["root"], d["args"], progress=True))
        where = "computed for this report (without --run, so no mislabel check)"
    counts = summ.get("counts", {})
    kind = "bad" if summ.get("leakage_pairs") else "good" if not any(counts.values()) else "warn"
    verdict = (f"{summ['leakage_pairs']} duplicate pair(s) cross the train/test boundary: test images the model "
               "may have trained on" if summ.get("leakage_pairs") else "no train/test leakage found")
    unchecked = "not checked (needs the audit's --run)" if not saved.is_file() else None
    rows = [(k, unchecked if k == "mislabelled" and unchecked else v) for k, v in counts.items()]
    rows.append(("images", summ.get("n_images")))
    cmd = f"python -m fgvc.datasets audit {d['name']} {d['root']} --run {run_dir} --output {run_dir / 'audit'}"
    return Section("Data audit", f"<p class='{kind}'>{esc(verdict)}</p>" + table(["finding", "count"], rows) +
                   f"<p class='note'>{esc(where)}. The full list with thumbnails, and likely mislabelled images: "
                   f"<code>{esc(cmd)}</code> (then <code>data.exclude</code> drops findings from training).</p>")


# ---------------------------------------------------------------- the page
def _noted(section: Section, note: str | None) -> Section:
    """``section`` opening with ``note`` (what is missing from the run) as a warning."""
    return section if not note else Section(section.title, f"<p class='warn'>{esc(note)}</p>" + section.body,
                                            section.anchor)


def build_page(run: TrainedRun, opts: ReportOptions, comparison: Any, tmp: Path) -> str:
    """The page's HTML for the trained ``run``: one pass over ``opts.split``, then every section (``comparison``: see
    :func:`results_section`; ``tmp``: a folder for the embedding map's PNG)."""
    t0 = time.time()
    run_dir, cfg, names = run.run_dir, run.cfg, list(run.class_names)
    split = opts.split
    final, missing = read_final(run_dir)  # an interrupted or damaged run: report what exists, say what is missing
    final = final or {}
    if missing:
        _log(f"note: {missing}")
    ds = run.dataset(split)
    _log(f"evaluating {len(ds)} images of split '{split}' ({run.describe()})")
    got = run.collect(split, ("logits", "embedding"), desc=f"report {split}")
    probs = torch.softmax(got.prediction.float(), 1).numpy()
    targets = got.targets.numpy().astype(np.int64)
    cm = confusion_matrix(probs.argmax(1), targets, len(names))
    here = {"what": run.describe(), "split": split, "n": len(targets),
            "top1": 100.0 * float((probs.argmax(1) == targets).mean()) if len(targets) else 0.0}
    sections = [recipe_section(run_dir), environment_section(run_dir, final.get("train_seconds")),
                _noted(results_section(run_dir, final, here, opts.published, comparison), missing),
                curves_section(run_dir),
                per_class_section(cm, names), confusion_section(cm, names, probs, targets, ds, opts.pairs),
                mistakes_section(run, ds, probs, targets, names, opts.worst, opts.cam)]
    if opts.projection != "none" and got.embedding is not None and len(targets) > 5:
        sections.append(embedding_section(got.embedding.numpy(), targets, names, cm, opts.projection, cfg["seed"],
                                          tmp))
    else:
        sections.append(Section("Embedding map", "<p class='note'>skipped (--projection none, or too few "
                                                 "images)</p>"))
    sections.append(Section("Data audit", "<p class='note'>skipped (--no-audit)</p>") if not opts.audit
                    else audit_section(cfg, run_dir))
    model = cfg["model"]
    summary = (f"{esc(model['name'])} on {esc(model['backbone'])}, {esc(cfg['data']['name'])} "
               f"({esc(cfg['data']['root'])}), {len(names)} classes: top-1 <b>{here['top1']:.2f}%</b> on "
               f"{here['n']} {esc(split)} images ({esc(here['what'])}).")
    footer = (f"Written by python -m fgvc.report on {time.strftime('%Y-%m-%d %H:%M')} in {time.time() - t0:.0f} s. "
              "Self-contained: no network needed.")
    return render_page(f"fgvc run report: {run_dir.name}", Markup(summary), sections, footer)
