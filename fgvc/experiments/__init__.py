"""Experiments over many ordinary runs: ``fgvc.ablate``'s trick-by-trick tables (a baseline row, then one change per
row, each trained over several seeds; :mod:`fgvc.experiments.plan`, :mod:`fgvc.experiments.ablate`,
:mod:`fgvc.experiments.table`, :mod:`fgvc.experiments.plot`)."""
