"""Model parts the methods are built from: the timm backbone wrapper, pooling (BAP, bilinear, compact bilinear),
classifier heads, attention cropping and dropping, transformer helpers."""
from __future__ import annotations

from fgvc.models import clip  # noqa: F401  (registers the clip: backbones)
