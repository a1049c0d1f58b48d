"""Drawing: overlays, attention and Grad-CAM figures, embedding maps, and the HTML pages of the run report and the
data audit (for :mod:`fgvc.visualize`, :mod:`fgvc.explain`, :mod:`fgvc.project`, :mod:`fgvc.report`)."""
