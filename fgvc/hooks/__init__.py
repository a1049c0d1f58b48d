"""Plug-ins of the training loop (:class:`fgvc.engine.hook.Hook`): TensorBoard, the fit verdict, end-of-training protocols."""
