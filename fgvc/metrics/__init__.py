"""Evaluation maths on tensors, with no model or run: accuracy and confusions, retrieval, the linear probe, and the fit verdict on training curves."""
