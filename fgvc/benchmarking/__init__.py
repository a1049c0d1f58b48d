"""Benchmarking: training speed, the input pipeline, step costs, inference backends, and the published-results table (the library behind `fgvc.bench`)."""
