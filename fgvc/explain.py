"""``python -m fgvc.explain RUN_DIR [--split test] [--n 16] [--images PATH ...] [--cam gradcam|gradcam++|scorecam|
attention] [--target pred|true] [--layer NAME] [--checkpoint last|best] --output DIR``

Explains a trained run's decisions with class activation maps: Grad-CAM (Selvaraju et al. 2017), Grad-CAM++
(Chattopadhay et al. 2018) or Score-CAM (Wang et al. 2020), computed by pytorch-grad-cam
(:mod:`fgvc.vis.cam`), for ``--n`` images evenly spaced over a split or for arbitrary photos (``--images``,
preprocessed with the run's eval transform). Writes one PNG per image (input, heat-map overlay, true and predicted
class with its probability) and ``grid.png`` with every overlay into ``--output DIR``.

* ``--target pred`` (default) explains the predicted class, ``--target true`` the true one (split images only:
  an arbitrary photo has no known class).
* ``--layer`` names the target layer (dotted, e.g. ``backbone.model.layer3``); by default a CNN's last stage, a
  ViT/DeiT's last block's ``norm1``, a Swin's last stage.
* WS-DAN and RA-CNN run several passes; the CAM explains the first one, on the raw image (``raw`` / ``scale1``
  logits), while the captions show the headline prediction.
* ``--cam attention`` draws the method's own maps (WS-DAN parts, CBAM spatial gates, RA-CNN zooms, with the
  object box) with the figure of ``fgvc.visualize`` (:mod:`fgvc.vis.attention_figure`), one per image and a grid.

Needs the ``explain`` extra (``pip install -e '.[explain]'``) for the CAMs; ``--cam attention`` does not.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from fgvc.cli import add_output, add_run_arguments, command, load_run, require_at_least, split_of
from fgvc.data.base import BadImageError, load_image
from fgvc.engine.builder import build_transform
from fgvc.errors import ConfigError, DataError
from fgvc.extras import require
from fgvc.methods.base import Outputs
from fgvc.vis.attention_figure import draw_attention
from fgvc.vis.cam import CAM_CHOICES, CAM_METHODS, cam_maps, cam_name, default_layer, first_pass_key
from fgvc.vis.cam_figure import CamPanel, draw_cam_grid, draw_cam_image
from fgvc.vis.overlay import denormalize
from fgvc.visualize import evenly_spaced

__all__ = ["main", "parse_args"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="fgvc-explain", description="Class activation maps (Grad-CAM, Grad-CAM++, Score-CAM) of a trained run.")
    add_run_arguments(ap)
    ap.add_argument("--n", type=int, default=16, help="number of images, evenly spaced over the split (default 16)")
    ap.add_argument("--images", nargs="+", default=None, metavar="PATH",
                    help="explain these image files instead (the run's eval transform; true class unknown)")
    ap.add_argument("--cam", default="gradcam", choices=CAM_CHOICES,
                    help="gradcam (default), gradcam++, scorecam, or attention (the method's own maps)")
    ap.add_argument("--target", dest="explain", default="pred", choices=["pred", "true"],
                    help="class to explain: the predicted (default) or the true one")
    ap.add_argument("--layer", default=None, metavar="NAME",
                    help="target layer, a dotted module name of the method (default: the backbone's last stage)")
    add_output(ap, "folder for the PNGs (one per image + grid.png)", required=True, metavar="DIR")
    return ap.parse_args(argv)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "image"


def _load_photos(run: Any, paths: Sequence[str]) -> Any:
    """The photos at ``paths`` as one normalised batch ``B, 3, S, S`` (the run's eval transform)."""
    transform = build_transform(run.cfg, False, run.data_config)
    images = []
    for p in paths:
        try:
            images.append(transform(load_image(p)))
        except BadImageError as exc:
            raise DataError(f"--images: cannot read {p}: {exc.problem}") from None
    return torch.stack(images)  # B, 3, S, S


def _select(run: Any, args: argparse.Namespace) -> tuple[Any, Any, list[str], str]:
    """(images, true labels or None, names, where): the split's evenly spaced images or the given photos."""
    if args.images:
        return _load_photos(run, args.images), None, [Path(p).name for p in args.images], f"{len(args.images)} photos"
    split = split_of(run, args.split)
    ds = run.dataset(split)
    indices = evenly_spaced(len(ds), args.n)
    if not indices:
        raise ConfigError(f"split '{split}' of {run.cfg['data']['root']} has no images to explain; choose another "
                          "--split or give --images")
    samples = [ds[i] for i in indices]
    images = torch.stack([s[0] for s in samples])  # B, 3, H, W
    return images, torch.tensor([int(s[1]) for s in samples]), [f"{split}-{i}" for i in indices], split


def _headline(run: Any, images: Any, batch: int = 32) -> tuple[Any, Any]:
    """(probabilities of the predicted class, predicted class) of the headline logits, on the CPU."""
    probs = torch.cat([run.infer(images[i:i + batch]).prediction.float().softmax(1).cpu()
                       for i in range(0, len(images), batch)])
    conf, pred = probs.max(1)
    return conf, pred


def _draw_attention(run: Any, images: Any, labels: Any, names: list[str], out_dir: Path, title: str) -> list[Path]:
    """``--cam attention``: the figure of ``fgvc.visualize`` per image and for all (``grid.png``)."""
    out = run.infer(images)
    classes = list(run.class_names)
    if labels is None:  # unknown true class: a "?" class after the model's
        classes, labels = classes + ["?"], torch.full((len(images),), len(classes), dtype=torch.long)
    mean, std = run.data_config["mean"], run.data_config["std"]

    def one(i: int) -> Outputs:
        cut = (lambda t: None if t is None else t[i:i + 1])  # noqa: E731
        return Outputs({k: v[i:i + 1] for k, v in out.logits.items()}, out.headline, out.embedding[i:i + 1],
                       out.feature_map[i:i + 1], cut(out.maps), cut(out.boxes))

    paths = [draw_attention(one(i), images[i:i + 1], labels[i:i + 1], classes, mean, std,
                            out_dir / f"{i:03d}-{_safe(Path(n).stem)}.png", title=f"{title}: {n}")
             for i, n in enumerate(names)]
    paths.append(draw_attention(out, images, labels, classes, mean, std, out_dir / "grid.png", title=title))
    return paths


def _draw_cams(run: Any, args: argparse.Namespace, images: Any, labels: Any, names: list[str], out_dir: Path,
               title: str) -> list[Path]:
    conf, pred = _headline(run, images)
    targets = labels if args.explain == "true" else pred
    heats = cam_maps(run, images, targets, args.cam, args.layer)  # B, H, W in [0, 1]
    classes = run.class_names
    layer = args.layer or default_layer(run.method)
    what = f"{cam_name(args.cam)} @ {layer}"
    mean, std = run.data_config["mean"], run.data_config["std"]
    panels = [CamPanel(denormalize(images[i], mean, std), heats[i], None if labels is None else classes[int(labels[i])],
                       classes[int(pred[i])], float(conf[i]), classes[int(targets[i])], names[i])
              for i in range(len(images))]
    paths = [draw_cam_image(p, out_dir / f"{i:03d}-{_safe(Path(p.name).stem)}.png", what) for i, p in enumerate(panels)]
    paths.append(draw_cam_grid(panels, out_dir / "grid.png", f"{title} - {what}, {args.explain} class"))
    return paths


@command(parse_args)
def main(args: argparse.Namespace) -> None:
    require_at_least(args, 1, "n")
    if args.images and args.explain == "true":
        raise ConfigError("--target true needs the true class, which arbitrary --images do not have: use "
                          "--target pred, or explain split images (drop --images)")
    if args.cam == "attention" and args.layer:
        raise ConfigError("--layer applies to gradcam, gradcam++ and scorecam, not to --cam attention (the method's "
                          "own maps)")
    if args.cam in CAM_METHODS:
        require("pytorch_grad_cam", "grad-cam", f"--cam {args.cam}")  # fail before loading anything
    run = load_run(args)
    images, labels, names, where = _select(run, args)
    out_dir = Path(args.output)
    model = run.cfg["model"]
    title = f"{run.run_dir.name if run.run_dir else args.target}: {model['name']} / {model['backbone']}, {where}"
    if args.cam == "attention":
        paths = _draw_attention(run, images, labels, names, out_dir, title)
    else:
        paths = _draw_cams(run, args, images, labels, names, out_dir, title)
        probe = run.infer(images[:1])
        if first_pass_key(probe) != probe.headline:
            print(f"note: the CAM explains the first (raw image) pass's '{first_pass_key(probe)}' logits; the "
                  f"captions show the headline '{probe.headline}' prediction")
    print(f"{len(images)} images ({run.describe()}): {len(paths) - 1} PNGs and grid.png in {out_dir}")
    print(paths[-1])


if __name__ == "__main__":
    sys.exit(main())
