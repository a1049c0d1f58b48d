"""Drawing helpers for :mod:`fgvc.visualize`: de-normalisation, map upsampling, heat overlays, boxes."""
