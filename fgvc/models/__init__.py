"""Model parts the methods are built from: the timm backbone wrapper, pooling (BAP, bilinear, compact bilinear),
classifier heads, attention cropping and dropping, transformer helpers."""
