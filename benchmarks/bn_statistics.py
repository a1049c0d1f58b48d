"""Diagnosis behind ``train.freeze_norm``: how much of a fine-tuned run's loss on unseen species comes from its
BatchNorm running statistics alone.

Embeds the unseen species of ``benchmarks/embeddings.py`` (RUNS/unseen.csv) with a run's weights twice: as trained,
and with every BatchNorm running mean / variance put back to the pretrained backbone's (ImageNet) values, all other
weights unchanged; prints Recall@1 and MAP@R of both.

    python benchmarks/bn_statistics.py runs/embeddings/ms_b001 [--runs runs/embeddings]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fgvc.engine.inference import TrainedRun  # noqa: E402
from fgvc.metrics.retrieval import retrieval_metrics  # noqa: E402

WEIGHTS = REPO.parent / "shared" / "weights" / "tf_efficientnet_lite0.safetensors"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--runs", default="runs/embeddings", help="where benchmarks/embeddings.py wrote unseen.csv")
    args = ap.parse_args()
    unseen = ["data.name=csv", "data.args={}", f"data.root={Path(args.runs) / 'unseen.csv'}", "data.train_split=test",
              "data.val_split=null", "data.test_split=test"]
    run = TrainedRun.load(args.run, overrides=unseen)
    cfg = run.cfg
    frozen = TrainedRun.load(REPO / "recipes" / "cub200_lite0.yaml", overrides=[
        f"model.backbone={cfg['model']['backbone']}", f"model.pretrained_file={WEIGHTS}", *unseen])

    def score(tag: str) -> None:
        got = run.collect("test", ("embedding",), same_classes=False)
        m = retrieval_metrics(got.embedding.numpy(), got.targets.numpy())
        print(f"{tag}: recall@1 {m['recall@1']:.2f}  map@r {m['map@r']:.2f}  ({len(got.targets)} queries)", flush=True)

    score("as trained")
    pretrained = dict(frozen.method.backbone.named_buffers())
    for name, buf in run.method.backbone.named_buffers():
        if name.endswith(("running_mean", "running_var")):
            buf.copy_(pretrained[name])
    score("pretrained BatchNorm statistics")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
