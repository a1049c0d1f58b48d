"""Knowledge distillation (Hinton, Vinyals & Dean 2015): the loss on fixed tensors, the teacher's preprocessing,
a tiny teacher distilled into a tiny student end to end, the user errors, and an exact resume."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fgvc import config
from fgvc.engine.checkpoint import load_checkpoint
from fgvc.engine.distill import build_distiller, distill_loss, kd_loss, to_teacher_inputs
from fgvc.engine.inference import TrainedRun
from fgvc.errors import ConfigError
from fgvc.train import main as train_main

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


# ------------------------------------------------------------------------ (a) the loss
def _fixed() -> tuple[torch.Tensor, torch.Tensor]:
    student = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    teacher = torch.tensor([[2.0, 1.0, 0.0], [1.0, 0.5, 2.5]])
    return student, teacher


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kd_term_is_t_squared_times_the_kl_of_the_softened_distributions(temperature):
    s, t = _fixed()
    p_t = (t / temperature).softmax(1)
    by_hand = (p_t * (p_t.log() - (s / temperature).log_softmax(1))).sum(1).mean() * temperature ** 2
    torch.testing.assert_close(kd_loss(s, t, temperature), by_hand)
    via_torch = F.kl_div((s / temperature).log_softmax(1), (t / temperature).log_softmax(1), log_target=True,
                         reduction="batchmean") * temperature ** 2
    torch.testing.assert_close(kd_loss(s, t, temperature), via_torch)
    assert kd_loss(t, t, temperature).abs() < 1e-6  # the teacher distilled into itself: nothing left to learn


def test_alpha_mixes_the_kd_term_and_the_student_loss():
    s, t = _fixed()
    student_loss = torch.tensor(1.2345)
    kd = kd_loss(s, t, 4.0)
    loss, logged = distill_loss(student_loss, s, t, 0.3, 4.0)
    torch.testing.assert_close(loss, 0.3 * kd + 0.7 * student_loss)
    torch.testing.assert_close(logged, kd)
    loss0, _ = distill_loss(student_loss, s, t, 0.0, 4.0)
    assert loss0 is student_loss  # alpha = 0: the method's own loss, exactly
    loss1, _ = distill_loss(torch.tensor(float("nan")), s, t, 1.0, 4.0)
    torch.testing.assert_close(loss1, kd)  # alpha = 1: pure KD (the student loss does not leak in, even as 0 * nan)


def test_kd_gradient_reaches_the_student_only():
    s, t = _fixed()
    s.requires_grad_(True)
    loss, _ = distill_loss(torch.tensor(0.0), s, t, 1.0, 2.0)
    loss.backward()
    # d/ds of T^2 KL at temperature T: T * (softmax(s/T) - softmax(t/T)) / B
    torch.testing.assert_close(s.grad, 2.0 * ((s.detach() / 2).softmax(1) - (t / 2).softmax(1)) / 2)


# ------------------------------------------------------------------- (b) preprocessing
def test_conversion_round_trips_between_normalisations():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    assert to_teacher_inputs(x, *IMAGENET, *IMAGENET, 32) is x  # nothing differs: the batch itself
    there = to_teacher_inputs(x, *IMAGENET, *HALF, 32)
    pixels = x * torch.tensor(IMAGENET[1]).view(1, 3, 1, 1) + torch.tensor(IMAGENET[0]).view(1, 3, 1, 1)
    torch.testing.assert_close(there, (pixels - 0.5) / 0.5)
    torch.testing.assert_close(to_teacher_inputs(there, *HALF, *IMAGENET, 32), x)


def test_conversion_resizes_to_the_teachers_size():
    colour = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)  # a flat image: resizing must not change its pixels
    x = ((colour - torch.tensor(IMAGENET[0]).view(1, 3, 1, 1)) / torch.tensor(IMAGENET[1]).view(1, 3, 1, 1)).expand(
        2, 3, 32, 32)
    y = to_teacher_inputs(x, *IMAGENET, *HALF, 40)
    assert y.shape == (2, 3, 40, 40)
    torch.testing.assert_close(y, ((colour - 0.5) / 0.5).expand(2, 3, 40, 40))
    back = to_teacher_inputs(y, *HALF, *IMAGENET, 32)
    torch.testing.assert_close(back, x)


# ------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def data_root(synthetic_set) -> Path:
    return synthetic_set(8)


@pytest.fixture(scope="module")
def teacher(data_root, tiny_run) -> Path:
    """A tiny teacher at another input size than the student's (40 px vs 32 px)."""
    return tiny_run(data_root, "train.max_steps=2", "data.img_size=40", "data.resize=44")


def _student(tmp_path: Path, data_root: Path, tiny_recipe, teacher: Path | str, extra: str = "") -> Path:
    return tiny_recipe(tmp_path / "student.yaml", data_root,
                       f"distill: {{teacher: {teacher}, alpha: 0.5, temperature: 2.0}}\n{extra}")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_teacher_distils_into_a_student(tmp_path, data_root, teacher, tiny_recipe):
    before = _sha(teacher / "checkpoints" / "last.pt")
    out = tmp_path / "run"
    assert train_main([str(_student(tmp_path, data_root, tiny_recipe, teacher)), "--output", str(out),
                       "--set", "train.max_steps=3"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(k in rows[0] for k in ("loss", "kd", "student_loss", "ce"))
    assert rows[0]["kd"] > 1e-6  # a fresh student and the teacher disagree (kd is 0 only at equal logits, above)
    # the logged loss is the mix of the two logged terms (the per-epoch means of a linear function)
    assert rows[0]["loss"] == pytest.approx(0.5 * rows[0]["kd"] + 0.5 * rows[0]["student_loss"], rel=1e-4)
    assert (out / "final.json").is_file()
    assert "distilling from" in (out / "train.log").read_text() and "40 px" in (out / "train.log").read_text()
    assert _sha(teacher / "checkpoints" / "last.pt") == before  # the teacher is only read
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["config"]["distill"]["teacher"] == str(teacher)  # the config is all a checkpoint keeps of it
    assert all(not k.startswith("teacher") for k in state["model"])


def test_the_teacher_is_frozen_in_eval_mode_and_sees_its_own_preprocessing(tmp_path, data_root, teacher, tiny_recipe):
    cfg, _ = config.load_recipe(_student(tmp_path, data_root, tiny_recipe, teacher))
    distiller = build_distiller(cfg, torch.device("cpu"), "none", {"mean": IMAGENET[0], "std": IMAGENET[1]},
                                TrainedRun.load(teacher).class_names)
    assert distiller is not None and distiller.teacher_size == 40
    assert not distiller.teacher.method.training
    assert not any(p.requires_grad for p in distiller.teacher.method.parameters())
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    logits = distiller.teacher_logits(x)
    assert logits.shape == (2, 3) and not logits.requires_grad
    ref = TrainedRun.load(teacher)  # the one load path; its own normalisation and size
    expected = ref.infer(to_teacher_inputs(x, *IMAGENET, *map(tuple, (ref.data_config["mean"], ref.data_config["std"])),
                                           40)).prediction
    torch.testing.assert_close(logits, expected.float())
    cfg["distill"] = None
    assert build_distiller(cfg, torch.device("cpu"), "none", {}, []) is None


# ------------------------------------------------------------------------ (c) user errors
def test_a_teacher_of_other_classes_is_refused(tmp_path, teacher, tiny_recipe, capsys):
    from fgvc.data import make_synthetic

    four = make_synthetic(tmp_path / "four", num_classes=4, images_per_class=4, render_size=48, progress=False)
    out = tmp_path / "run"
    capsys.readouterr()
    assert train_main([str(_student(tmp_path, four, tiny_recipe, teacher)), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 'distill.teacher'") and "3 classes" in err and "has 4" in err
    assert "same classes in the same order" in err
    assert not out.exists()  # refused before anything was written


def test_a_missing_teacher_is_refused(tmp_path, data_root, tiny_recipe, capsys):
    out = tmp_path / "run"
    assert train_main([str(_student(tmp_path, data_root, tiny_recipe, tmp_path / "nowhere")), "--output",
                       str(out)]) == 2
    assert "no such run directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert train_main([str(_student(tmp_path, data_root, tiny_recipe, tmp_path / "empty")), "--output",
                       str(out)]) == 2
    assert "has no checkpoints/last.pt" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("value, message", [
    ("{teacher: r, alpha: 1.5}", "'distill.alpha'"),
    ("{teacher: r, temperature: 0}", "'distill.temperature'"),
    ("{teacher: r, checkpoint: final}", "'distill.checkpoint'"),
    ("{teacher: r, tempreature: 2}", "did you mean 'temperature'"),
    ("{alpha: 0.5}", "lacks teacher"),
    ("{teacher: r, alpha: high}", "must be float"),
])
def test_the_distill_section_is_validated(tmp_path, data_root, tiny_recipe, value, message):
    recipe = tiny_recipe(tmp_path / "r.yaml", data_root)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        config.load_recipe(recipe, [f"distill={value}"])


def test_distill_keys_are_set_one_by_one_and_default(tmp_path, data_root, tiny_recipe):
    recipe = tiny_recipe(tmp_path / "r.yaml", data_root)
    assert config.load_recipe(recipe)[0]["distill"] is None
    cfg, _ = config.load_recipe(recipe, ["distill.teacher=runs/t", "distill.alpha=0.25"])
    assert cfg["distill"] == {"teacher": "runs/t", "alpha": 0.25, "temperature": 4.0, "checkpoint": "last"}


# ------------------------------------------------------------------------ (d) resume
@pytest.mark.slow  # trains twice: ~1-3 s
def test_a_distilled_run_resumes_exactly(tmp_path, data_root, teacher, tiny_recipe, crash_after_step):
    recipe = _student(tmp_path, data_root, tiny_recipe, teacher, "")
    sets = ["--set", "train.epochs=2", "train.checkpoint_every_steps=1"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert train_main([str(recipe), "--output", str(full), *sets]) == 0
    per_epoch = load_checkpoint(full / "checkpoints" / "last.pt")["progress"]["global_step"] // 2
    undo = crash_after_step(per_epoch + 1)  # die right after the checkpoint of that step
    with pytest.raises(crash_after_step.Crash):
        train_main([str(recipe), "--output", str(part), *sets])
    undo()
    progress = load_checkpoint(part / "checkpoints" / "last.pt")["progress"]
    assert (progress["epoch"], progress["batch"]) == (1, 1)
    assert train_main(["--resume", str(part)]) == 0  # the teacher is loaded again from its run directory
    a, b = (json.loads((d / "final.json").read_text()) for d in (full, part))
    assert a["top1"] == b["top1"] and a["steps"] == b["steps"] == 2 * per_epoch
    rows_a, rows_b = ((d / "metrics.jsonl").read_text().splitlines() for d in (full, part))
    for ra, rb in zip(map(json.loads, rows_a), map(json.loads, rows_b), strict=True):
        assert ra["kd"] == pytest.approx(rb["kd"]) and ra["student_loss"] == pytest.approx(rb["student_loss"])
    sa, sb = (load_checkpoint(d / "checkpoints" / "last.pt")["model"] for d in (full, part))
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], msg=key)


# ------------------------------------------------------------------------ any method, either side
STUDENTS = {"baseline": {}, "wsdan": {"num_attentions": 2}, "bcnn": {"reduce_dim": 8}, "senet": {}, "cbam": {},
            "racnn": {"share_backbone": True, "apn_hidden": 16, "apn_channels": 4, "apn_grid": 2}}


@pytest.fixture(scope="module")
def wsdan_teacher(data_root, tiny_run) -> Path:
    """A multi-branch teacher (WS-DAN: its headline is the refined logits of the raw and object-crop views)."""
    return tiny_run(data_root, "train.max_steps=1", "model.name=wsdan", "model.args={num_attentions: 2}",
                    "data.img_size=48", "data.resize=52")


@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_any_method_learns_from_a_multi_branch_teacher(tmp_path, data_root, wsdan_teacher, tiny_recipe, name):
    from fgvc.methods import build_method

    cfg, _ = config.load_recipe(_student(tmp_path, data_root, tiny_recipe, wsdan_teacher))
    torch.manual_seed(0)
    student = build_method({"name": name, "backbone": "test_resnet.r160_in1k", "pretrained": False,
                            "args": STUDENTS[name]}, 3).train()
    classes = TrainedRun.load(wsdan_teacher).class_names
    distiller = build_distiller(cfg, torch.device("cpu"), "none", student.data_config(), classes)
    assert distiller.teacher_size == 48 and distiller.teacher.cfg["model"]["name"] == "wsdan"
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    out = student(x, y)
    if name == "racnn":  # its training logits are detached: refused, never a silent no-op
        with pytest.raises(ConfigError, match="without gradient"):
            distiller(x, out)
        return
    student_loss = out["loss"]
    got = distiller(x, out)
    assert set(got) >= {"loss", "kd", "student_loss", "logits"}
    torch.testing.assert_close(got["loss"], 0.5 * got["kd"] + 0.5 * student_loss)
    student.zero_grad()
    kd_only = kd_loss(out["logits"], distiller.teacher_logits(x), 2.0)  # the KD term alone moves the student
    kd_only.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
