"""fgvc.metrics.fit_verdict: the over/underfitting verdict of hand-made training curves, and final.json's ``fit`` key."""
from __future__ import annotations

import json

from fit_helpers import metric_rows

from fgvc.data import make_synthetic
from fgvc.metrics.fit_verdict import REMEDIES, analyse_run, assess, describe
from fgvc.train import main as train_main


def curves(train_top1, val_top1=None, loss=None, val_loss=None) -> list[dict]:
    """metrics.jsonl rows (0-based ``epoch``) from per-epoch lists."""
    return metric_rows(train_top1, val_top1, loss=loss, val_loss=val_loss)


def test_clear_overfit_starts_at_the_val_peak_one_based():
    fit = assess(curves(train_top1=[60, 80, 92, 98, 100, 100, 100],
                        val_top1=[40, 60, 70, 75, 72, 68, 65],
                        loss=[2.0, 1.2, 0.6, 0.3, 0.1, 0.05, 0.02],
                        val_loss=[1.5, 1.0, 0.8, 0.7, 0.8, 0.95, 1.1]))
    assert fit.verdict == "overfitting" and fit.epoch == 4  # 1-based: metrics.jsonl epoch 3
    assert fit.gap == 35.0
    assert fit.remedies[1:] == REMEDIES["overfitting"][1:] and "train.epochs=4" in fit.remedies[0]
    assert any("best.pt" in r for r in fit.remedies) and any("mixup" in r for r in fit.remedies)
    assert any("weight_decay" in r for r in fit.remedies) and any("label_smoothing" in r for r in fit.remedies)


def test_val_loss_alone_or_val_accuracy_alone_find_the_onset():
    by_loss = assess(curves([70, 85, 95, 99, 100], [60, 70, 75, 75, 75], [1, .6, .3, .1, .05], [1, .8, .7, .9, 1.2]))
    assert by_loss.verdict == "overfitting" and by_loss.epoch == 3
    by_acc = assess(curves([70, 85, 95, 99, 100], [60, 70, 78, 74, 70]))  # no val_loss logged (an older run)
    assert by_acc.verdict == "overfitting" and by_acc.epoch == 3


def test_large_gap_without_onset_is_overfitting_with_no_epoch():
    fit = assess(curves([90, 99, 100, 100], [60, 70, 71, 71.5], val_loss=[1.0, 0.9, 0.85, 0.84]))
    assert fit.verdict == "overfitting" and fit.epoch is None and fit.gap == 28.5


def test_clear_underfit_low_and_still_rising():
    fit = assess(curves(train_top1=[30, 40, 50, 58], val_top1=[28, 37, 45, 52],
                        loss=[3.0, 2.6, 2.2, 1.9], val_loss=[3.1, 2.7, 2.3, 2.0]))
    assert fit.verdict == "underfitting" and fit.epoch is None and fit.gap == 6.0
    assert any("train.epochs" in r for r in fit.remedies) and any("backbone_lr_scale" in r for r in fit.remedies)
    assert any("train.lr" in r for r in fit.remedies) and any("img_size" in r for r in fit.remedies)


def test_good_fit():
    fit = assess(curves(train_top1=[60, 80, 90, 92, 93], val_top1=[55, 75, 85, 87, 87.5],
                        val_loss=[1.2, 0.8, 0.6, 0.55, 0.54]))
    assert fit.verdict == "good fit" and fit.epoch is None and fit.gap == 5.5 and fit.remedies == []


def test_too_short_and_no_validation():
    short = assess(curves([50, 70], [45, 60]))
    assert short.verdict == "too short to tell" and short.gap == 10.0 and short.epoch is None
    none = assess(curves([50, 70, 80, 90, 95]))  # data.val_split: null
    assert none.verdict == "no validation split" and none.gap is None and none.epoch is None
    assert "data.val_split" in none.remedies[0] and "test" in none.remedies[0]
    assert assess([]).verdict == "no validation split"


def test_eval_every_uses_only_validated_epochs():
    rows = curves([60, 65, 70, 75, 80, 85], [None, 50, None, 70, None, 80])
    rows = [{k: v for k, v in r.items() if v is not None} for r in rows]
    fit = assess(rows)  # 3 validated epochs (2, 4, 6): val still rising 10 then 5 points per epoch
    assert fit.verdict == "underfitting" and fit.gap == 5.0 and "rises 5.0 points" in fit.reason


def test_analyse_run_reads_metrics_jsonl(tmp_path):
    rows = curves([60, 80, 92, 98, 100], [40, 60, 75, 70, 66])
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"epoch": 5, "los')
    fit = analyse_run(tmp_path)
    assert fit["verdict"] == "overfitting" and fit["epoch"] == 3 and set(fit) >= {"gap", "remedies", "reason"}
    line = describe(fit)
    assert line.startswith("fit: overfitting from epoch 3") and "try:" in line
    assert analyse_run(tmp_path / "missing")["verdict"] == "no validation split"


def test_training_writes_fit_into_final_json_and_val_loss_per_epoch(tmp_path, tiny_recipe):
    root = make_synthetic(tmp_path / "syn", num_classes=3, images_per_class=4, render_size=48, progress=False)
    recipe = tiny_recipe(tmp_path / "r.yaml", root, "")
    out = tmp_path / "run"
    assert train_main([str(recipe), "--output", str(out), "--set", "data.val_split=val", "train.epochs=3",
                       "train.max_steps=3"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("val_loss" in r and "val_top1" in r for r in rows)
    assert all(r["val_n"] == rows[0]["val_n"] >= 1 and r["val_loss_se"] >= 0 for r in rows)  # the split's noise
    final = json.loads((out / "final.json").read_text())
    assert set(final["fit"]) >= {"verdict", "gap", "epoch", "remedies", "gap_ci", "val_images"}
    assert final["fit"]["val_images"] == rows[0]["val_n"]
    assert final["fit"] == analyse_run(out)
    assert "fit: " in (out / "train.log").read_text()


def test_saturated_train_with_val_still_creeping_up_is_not_underfitting():
    from fgvc.metrics.fit_verdict import assess

    # flowers102-mini, lite0, 6 epochs: train 100 %, val 95.8 -> 97.5 -> 99.2 (0.8 points below train)
    hist = [{"epoch": e, "loss": 2.0 - 0.2 * e, "train_top1": t, "val_top1": v}
            for e, (t, v) in enumerate([(60, 80), (90, 92), (97, 94.2), (99.5, 95.8), (96.9, 97.5), (100, 99.2)])]
    assert assess(hist).verdict == "good fit"
