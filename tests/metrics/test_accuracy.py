import numpy as np
import torch

from fgvc.metrics.accuracy import confusion_matrix, per_class_table, summarize, topk_correct


def test_topk_and_summary():
    logits = torch.tensor([[3.0, 2, 1], [0, 1, 2], [1, 3, 2], [5, 0, 1]])
    targets = torch.tensor([0, 1, 2, 0])
    assert topk_correct(logits, targets, 1).tolist() == [True, False, False, True]
    assert topk_correct(logits, targets, 2).tolist() == [True, True, True, True]
    s = summarize(logits, targets)
    assert s["top1"] == 50.0 and s["top5"] == 100.0 and s["n_images"] == 4
    # per class: class0 2/2, class1 0/1, class2 0/1 -> mean 33.3
    assert abs(s["mean_class_acc"] - 100 / 3) < 1e-4


def test_confusion_and_table():
    cm = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    logits = torch.eye(3)[[0, 1, 1, 2]]
    table = per_class_table(logits, torch.tensor([0, 1, 2, 2]), ["a", "b", "c"])
    assert table.loc[2, "accuracy"] == 50.0 and table.loc[2, "most_confused_with"] == "b"
