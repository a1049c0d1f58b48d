"""``python -m fgvc.zeroshot RECIPE --clip MODEL [--weights FILE] [--templates default|FILE] [--split test]
[--set ...] --output DIR``

Zero-shot classification with a CLIP model (Radford et al. 2021) through open_clip (Ilharco et al.; the ``clip``
extra): no training image, the classes are named in words. The recipe names the data set (``--set data.root=...``
points it elsewhere); its class names become prompts (CUB's ``001.Black_footed_Albatross`` -> "a photo of a
Black-footed Albatross, a type of bird."), averaged over the templates per class (:mod:`fgvc.protocols.zeroshot`).
``--clip`` is an open_clip model name (``ViT-B-32``) or a model config ``.json`` file; ``--weights FILE`` a local
state dict of that model (``torch.save(model.state_dict(), FILE)``), else ``--pretrained TAG`` (default: open_clip's
first tag for the model, e.g. ``openai``) is downloaded by open_clip.

Writes what ``fgvc.evaluate`` writes for classification, with the same JSON keys (``top1``, ``top5``,
``mean_class_acc``, ``n_images``, ``prediction`` ...) and tables: ``DIR/zeroshot-<split>.json``,
``zeroshot-<split>-per_class.csv`` and ``zeroshot-<split>-confusion.csv``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fgvc.cli import add_batch_size, add_device, add_output, add_set, add_split, command
from fgvc.config import load_recipe, scored_split
from fgvc.engine.builder import resolve_device
from fgvc.models.clip import create_clip
from fgvc.protocols.zeroshot import read_templates, zero_shot_classify


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fgvc-zeroshot",
                                 description="Zero-shot classification of a recipe's data set with a CLIP model.")
    ap.add_argument("recipe", help="recipe (.yaml) naming the data set (data.name, data.root)")
    ap.add_argument("--clip", required=True, metavar="MODEL",
                    help="open_clip model name (e.g. ViT-B-32) or an open_clip model config .json file")
    ap.add_argument("--weights", default=None, metavar="FILE",
                    help="local state dict of the CLIP model (torch.save(model.state_dict(), FILE) or .safetensors); "
                         "default: open_clip's --pretrained weights, downloaded")
    ap.add_argument("--pretrained", default=None, metavar="TAG",
                    help="open_clip's pretrained tag when no --weights (default: its first for the model, e.g. openai)")
    ap.add_argument("--templates", default="default", metavar="default|FILE",
                    help="prompt templates: default (per data set, e.g. 'a photo of a {}, a type of bird.') or a "
                         "file with one template per line, each with one {} for the class name")
    add_split(ap)
    add_set(ap)
    add_batch_size(ap)
    add_device(ap)
    add_output(ap, "directory for zeroshot-<split>.json and its -per_class.csv and -confusion.csv", required=True,
               metavar="DIR")
    return ap.parse_args(argv)


@command(parse_args)
def main(args: argparse.Namespace) -> None:
    cfg, _ = load_recipe(args.recipe, args.sets)
    split = scored_split(cfg, args.split)
    templates = read_templates(args.templates, cfg["data"]["name"])
    model, tokenizer = create_clip(args.clip, args.weights, args.pretrained)
    result = zero_shot_classify(cfg, model, tokenizer, split, templates, resolve_device(args.device), args.batch_size)
    metrics = dict(result.metrics, split=split, model=args.clip, recipe=str(args.recipe), tta_flip=False,
                   weights=model.fgvc_weights)
    out = Path(args.output)
    stem = f"zeroshot-{split}"
    wrote = result.save(out, stem, metrics)
    print(f"{split} ({metrics['n_images']} images, zero-shot {args.clip}, {metrics['weights']})")
    print("\n".join(result.lines))
    print(wrote)


if __name__ == "__main__":
    sys.exit(main())
