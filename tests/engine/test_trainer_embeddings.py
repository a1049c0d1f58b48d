"""The trainer with the embedding-training keys together (in-process, tiny synthetic set): data.sampler pk,
an ArcFace head, class-weighted cross-entropy from the train split's frequencies, semi-hard triplet and
proxy-anchor feature losses with the proxies at 100 x lr."""
import json

import pytest
import torch

from fgvc.engine.checkpoint import load_checkpoint
from fgvc.train import main as train_main

pytest.importorskip("pytorch_metric_learning")


@pytest.mark.slow
def test_embedding_recipe_trains_and_resumes_exactly(tmp_path, crash_after_step):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""
seed: 1
data:
  name: synthetic
  root: {tmp_path / 'syn'}
  img_size: 32
  resize: 36
  num_workers: 0
  sampler: pk
  sampler_args: {{p: 2, k: 2}}
  args: {{num_classes: 3, images_per_class: 12, render_size: 40, seed: 0, val_fraction: 0.25}}
model: {{name: baseline, backbone: test_resnet.r160_in1k, pretrained: false,
        args: {{head: arcface, head_args: {{s: 16, m: 0.3}}}}}}
loss:
  name: weighted_cross_entropy
  aux:
    - {{name: triplet, weight: 0.5, args: {{mining: semi_hard}}}}
    - {{name: proxy_anchor, weight: 0.1, lr_scale: 100}}
train: {{epochs: 2, batch_size: 4, lr: 0.01, device: cpu, amp: none, threads: 1, warmup_epochs: 0,
        checkpoint_every_steps: 1}}
""")
    full, part = tmp_path / "full", tmp_path / "part"
    assert train_main([str(recipe), "--output", str(full)]) == 0
    rows = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(k in rows[0] for k in ("ce", "triplet", "proxy_anchor"))
    state = load_checkpoint(full / "checkpoints" / "last.pt")
    groups = {g.get("name") for g in state["optimizer"]["param_groups"]}
    assert "loss.proxy_anchor" in groups  # the proxies reached the optimizer in a group of their own
    # crash right after the checkpoint of step 4 (mid-epoch 2: an epoch is 3 batches of the 12 train images), resume
    undo = crash_after_step(4)  # die right after the checkpoint of that step
    with pytest.raises(crash_after_step.Crash):
        train_main([str(recipe), "--output", str(part)])
    undo()
    assert load_checkpoint(part / "checkpoints" / "last.pt")["progress"]["batch"] == 1
    assert train_main([str(recipe), "--output", str(part), "--resume"]) == 0
    a = json.loads((full / "final.json").read_text())
    b = json.loads((part / "final.json").read_text())
    assert a["top1"] == b["top1"] and a["steps"] == b["steps"]
    sa = load_checkpoint(full / "checkpoints" / "last.pt")["model"]
    sb = load_checkpoint(part / "checkpoints" / "last.pt")["model"]
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], msg=key)
