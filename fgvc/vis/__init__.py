"""Drawing for :mod:`fgvc.visualize`: overlay helpers (de-normalisation, map upsampling, heat overlays) and the
attention figure, drawn from one inference pass's :class:`~fgvc.methods.base.Outputs`."""
