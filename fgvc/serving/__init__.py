"""Serving a trained model over HTTP (``python -m fgvc.serve``; the ``serve`` extra: FastAPI and uvicorn).

* :mod:`fgvc.serving.model`: the model, loaded once through ``fgvc.predict``'s path (run directory or ``.onnx``);
* :mod:`fgvc.serving.limits`: what an upload may be, and decoding its bytes as ``fgvc.predict`` decodes a file;
* :mod:`fgvc.serving.batching`: concurrent requests gathered into one forward pass;
* :mod:`fgvc.serving.metrics`: counters in the Prometheus text format;
* :mod:`fgvc.serving.page`: the HTML page at ``/``;
* :mod:`fgvc.serving.app`: the FastAPI app tying them together.

The package is named ``serving`` because ``fgvc/serve.py`` is the command (a package ``fgvc/serve/`` would hide it).
"""
