"""Deploying a trained run: export, quantization and running the exported files.

* :mod:`fgvc.deploy.export` -- the headline prediction of a run as ONNX (dynamo exporter) or TorchScript, with its
  preprocessing inside the file, checked against PyTorch on the run's own test images (:mod:`fgvc.deploy.parity`).
* :mod:`fgvc.deploy.quantize` -- ONNX Runtime INT8 (static QDQ and dynamic) with a size / top-1 / latency table.
* :mod:`fgvc.deploy.runtime` -- running an exported file (ONNX Runtime, ``torch.jit``), top-1 and latency.
* :mod:`fgvc.deploy.meta` -- the ``metadata_props`` (ONNX) and ``fgvc.json`` (TorchScript) that carry the
  preprocessing and the class names; :mod:`fgvc.deploy.files` -- write to a temporary name, rename at the end.

The optional packages (onnx, onnxruntime, onnxscript: setup.cfg's ``deploy`` extra) are imported inside the functions
that need them, through :func:`fgvc.extras.require`, so importing this package (or the core) never needs them.
"""
