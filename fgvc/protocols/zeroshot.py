"""Zero-shot classification with an image-text model: classes named in words, no training image.

CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision", sec. 3.1.4)
classifies an image by the class whose sentence it embeds closest to. Each class name is put into every prompt
template ("a photo of a {}, a type of bird."), the text tower embeds each sentence, the L2-normalised sentence
embeddings of a class are averaged and normalised again (the class's text feature ``t_k``); an image's logits are
``logit_scale * <x / |x|, t_k>`` for its image embedding ``x``. The models come from open_clip (Ilharco et al. 2021,
:mod:`fgvc.models.clip`).

The default templates are those of the CLIP paper's prompt-engineering code per data set (:data:`DEFAULT_TEMPLATES`:
birds for CUB-200-2011, flowers for Oxford Flowers 102, a generic one otherwise); a templates file holds one
template per line, each with one ``{}`` where the class name goes (blank lines and ``#`` comments are skipped).
Scores are those of ``fgvc.evaluate``'s classification protocol (top-1, top-5, mean per-class accuracy, the
per-class table and the confusion matrix), computed by the same functions.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from fgvc.config import eval_batch_size
from fgvc.data.class_names import prompt_names, text_domain
from fgvc.engine.builder import build_split
from fgvc.errors import ZeroShotError
from fgvc.metrics.accuracy import classification_metrics
from fgvc.protocols.base import ProtocolResult
from fgvc.protocols.classification import classification_tables

__all__ = ["DEFAULT_TEMPLATES", "HEADLINE", "read_templates", "class_text_features", "zero_shot_logits",
           "clip_input", "zero_shot_classify"]

# the CLIP paper's templates for these data sets (its Birdsnap and Flowers102 prompts), and its plainest one
DEFAULT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "birds": ("a photo of a {}, a type of bird.",),
    "flowers": ("a photo of a {}, a type of flower.",),
    "generic": ("a photo of a {}.",),
}
HEADLINE = "zeroshot"  # the logits key of the result (metrics "prediction", "zeroshot_top1")


def read_templates(spec: str, dataset: str) -> list[str]:
    """``default``: :data:`DEFAULT_TEMPLATES` of ``dataset``'s domain; else a file with one template per line."""
    if spec == "default":
        return list(DEFAULT_TEMPLATES[text_domain(dataset)])
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ZeroShotError(f"--templates {spec}: no such file; give 'default' or a text file with one template per "
                            "line, e.g. 'a photo of a {}, a type of bird.'")
    templates = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.count("{}") != 1:
            raise ZeroShotError(f"{path}, line {number}: {text[:80]!r} needs exactly one {{}} where the class name "
                                "goes (e.g. 'a photo of a {}.')")
        templates.append(text)
    if not templates:
        raise ZeroShotError(f"{path} holds no template: write one per line, each with one {{}} for the class name")
    return templates


def class_text_features(encode_text: Callable[[list[str]], Tensor], names: Sequence[str],
                        templates: Sequence[str]) -> Tensor:
    """``K, D``: per class, the mean of its L2-normalised sentence embeddings (one per template), normalised again.
    ``encode_text`` maps a list of sentences to their ``N, D`` embeddings."""
    rows = []
    for name in names:
        sentences = F.normalize(encode_text([t.format(name) for t in templates]).float(), dim=-1)
        rows.append(F.normalize(sentences.mean(0), dim=-1))
    return torch.stack(rows)


def zero_shot_logits(image_features: Tensor, class_features: Tensor, logit_scale: float | Tensor) -> Tensor:
    """``B, K`` = ``logit_scale * normalise(image_features) @ normalise(class_features).T``."""
    return logit_scale * F.normalize(image_features.float(), dim=-1) @ F.normalize(class_features.float(), dim=-1).T


def clip_input(model: nn.Module) -> tuple[int, dict[str, Any]]:
    """The input side and the ``data_config`` (mean, std) of an open_clip model's image tower."""
    size = getattr(model.visual, "image_size", 224)
    side = int(size[0] if isinstance(size, (tuple, list)) else size)
    cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    mean = tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))  # OpenAI's, open_clip's default
    std = tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
    return side, {"mean": mean, "std": std}


@torch.no_grad()
def zero_shot_classify(cfg: dict[str, Any], model: nn.Module, tokenizer: Callable[..., Tensor], split: str,
                       templates: Sequence[str], device: torch.device, batch_size: int | None = None
                       ) -> ProtocolResult:
    """Zero-shot scores of ``model`` (an open_clip model) on ``split`` of the recipe's data set: images resized
    (shorter side) and centre-cropped to the model's input side and normalised with its mean and std, as CLIP's
    preprocessing does; the result has :func:`fgvc.protocols.classification.classification_tables`' tables and the
    class names put into the prompts (``metrics["prompt_names"]``)."""
    t0 = time.time()
    side, data_config = clip_input(model)
    data = copy.deepcopy(cfg)
    data["data"].update(img_size=side, resize=side)  # CLIP: shorter side to the input size, centre crop
    ds = build_split(data, split, False, data_config)
    names = prompt_names(cfg["data"]["name"], ds.classes)
    model = model.to(device).eval()

    def encode_text(sentences: list[str]) -> Tensor:
        return model.encode_text(tokenizer(sentences).to(device))

    classes = class_text_features(encode_text, names, templates)
    scale = model.logit_scale.exp().float()
    loader = DataLoader(ds, batch_size=batch_size or eval_batch_size(cfg), shuffle=False,
                        num_workers=cfg["data"]["num_workers"], pin_memory=device.type == "cuda")
    logits, targets = [], []
    for images, labels in loader:
        logits.append(zero_shot_logits(model.encode_image(images.to(device)), classes, scale).cpu())
        targets.append(labels)
    if not logits:
        raise ZeroShotError(f"split '{split}' of {cfg['data']['root']} has no images")
    scores, truth = torch.cat(logits), torch.cat(targets)
    metrics = classification_metrics({HEADLINE: scores}, HEADLINE, truth)
    metrics.update(seconds=round(time.time() - t0, 3), n_classes=len(names), templates=list(templates),
                   logit_scale=round(float(scale), 4), prompt_names=names)
    lines = [f"  top-1 {metrics['top1']:.2f}   top-5 {metrics['top5']:.2f}   "
             f"mean per-class {metrics['mean_class_acc']:.2f}",
             f"  {len(names)} classes x {len(templates)} template(s), e.g. {templates[0].format(names[0])!r}"]
    return ProtocolResult(metrics, classification_tables(scores, truth, ds.classes), lines)
