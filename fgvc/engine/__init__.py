"""The training loop and the run directory: the trainer and its hooks' interface, building a recipe's objects,
the optimizer factory, checkpoints, exact resume, distributed training, and :class:`~fgvc.engine.inference.TrainedRun`
(load a run once, run any split once)."""
