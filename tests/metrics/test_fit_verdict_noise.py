"""fgvc.metrics.fit_verdict with the validation split's size: overfitting only beyond the noise of ``val_n`` images,
``inconclusive`` within it; the gap's 95 % interval in the verdict and its log line."""
from __future__ import annotations

import pytest

from fit_helpers import metric_rows as rows  # val_n (``n``) on every row, as the trainer logs it

from fgvc.metrics.fit_verdict import OVERFIT_GAP_PP, REMEDIES, assess, describe, wilson_interval


def test_wilson_interval_matches_the_textbook_values() -> None:
    lo, hi = wilson_interval(82.0, 100)  # 82/100: 73.3-88.3 % (Wilson, z = 1.96)
    assert lo == pytest.approx(73.33, abs=0.05) and hi == pytest.approx(88.31, abs=0.05)
    narrow = wilson_interval(82.0, 1000)  # ten times the images: about a third of the width
    assert narrow[1] - narrow[0] == pytest.approx((hi - lo) / 10 ** 0.5, rel=0.1) and narrow[0] > 79.0
    lo, hi = wilson_interval(100.0, 100)
    assert hi == pytest.approx(100.0) and lo == pytest.approx(96.30, abs=0.05)


def test_the_demo_history_on_100_val_images_is_inconclusive_not_overfitting() -> None:
    # the filed demo run: val 82 % on a 100-image holdout, train 99.6 %: a 17.6-point gap, test top-1 was 92
    hist = rows([70, 93, 97, 98.8, 99.4, 99.6], [60, 76, 80, 81, 83, 82], n=100,
                val_loss=[1.2, 0.8, 0.65, 0.62, 0.6, 0.61], val_loss_se=[0.06] * 6)
    fit = assess(hist)
    assert fit.verdict == "inconclusive" and fit.epoch is None and fit.gap == pytest.approx(17.6)
    assert fit.val_images == 100 and fit.gap_ci[0] < OVERFIT_GAP_PP < fit.gap_ci[1]
    assert "100 val images" in fit.reason and fit.remedies == REMEDIES["inconclusive"]
    assert any("val_fraction" in r for r in fit.remedies)
    line = describe(fit.to_dict())
    assert line.startswith("fit: inconclusive (train-val top-1 gap 17.6 points, 95 % interval")
    assert "with 100 val images" in line and "overfitting" in line  # the reason names what it could not confirm


def test_the_same_gap_on_a_large_val_split_is_overfitting() -> None:
    hist = rows([70, 93, 97, 98.8, 99.4, 99.6], [60, 76, 80, 81, 83, 82], n=2000)
    fit = assess(hist)
    assert fit.verdict == "overfitting" and fit.epoch is None and fit.gap_ci[0] > OVERFIT_GAP_PP
    assert "95 % interval" in fit.reason and fit.val_images == 2000


def test_a_val_drop_within_noise_is_no_onset_but_a_large_one_is() -> None:
    small = rows([80, 95, 99, 100, 100], [80, 86, 84, 83, 82], n=100)  # 4 points = 4 images
    fit = assess(small)
    assert fit.verdict == "inconclusive" and fit.epoch is None and "peaked at 86.0%" in fit.reason
    big = rows([80, 95, 99, 100, 100], [80, 86, 84, 83, 82], n=5000)
    fit = assess(big)
    assert fit.verdict == "overfitting" and fit.epoch == 2  # 1-based: the peak
    steep = rows([80, 95, 99, 100, 100], [80, 90, 80, 72, 65], n=100)
    assert assess(steep).verdict == "overfitting" and assess(steep).epoch == 2


def test_a_val_loss_rise_within_its_standard_error_is_not_an_onset() -> None:
    args = dict(train=[80, 95, 99, 100, 100], val=[80, 85, 86, 86, 86],
                loss=[1.0, 0.5, 0.3, 0.2, 0.1], val_loss=[0.8, 0.5, 0.45, 0.5, 0.52])
    noisy = assess(rows(**args, n=100, val_loss_se=[0.08] * 5))  # rise 0.07 < 1.96 * hypot(0.08, 0.08)
    assert noisy.verdict == "inconclusive" and "val loss rose" in noisy.reason
    clear = assess(rows(**args, n=100, val_loss_se=[0.01] * 5))
    assert clear.verdict == "overfitting" and clear.epoch == 3
    old = assess(rows(**args))  # a run from before val_n / val_loss_se: judged as before, no interval
    assert old.verdict == "overfitting" and old.gap_ci is None and old.val_images is None


def test_a_good_fit_keeps_its_verdict_and_carries_the_interval() -> None:
    fit = assess(rows([60, 80, 90, 92, 93], [55, 75, 85, 87, 87.5], n=200))
    assert fit.verdict == "good fit" and fit.val_images == 200
    lo, hi = wilson_interval(87.5, 200)
    assert fit.gap_ci == [round(93 - hi, 2), round(93 - lo, 2)]


def test_val_still_rising_counts_only_beyond_noise() -> None:
    climbing = dict(train=[60, 80, 90, 93, 95], val=[55, 75, 84, 86, 88])  # +4 points over the last 3 epochs
    assert assess(rows(**climbing, n=100)).verdict == "good fit"  # 4 images of 100: noise
    assert assess(rows(**climbing, n=5000)).verdict == "underfitting"
    assert assess(rows(**climbing)).verdict == "underfitting"  # no val_n logged: as before
