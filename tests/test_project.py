"""fgvc.project, fgvc.vis.projection (t-SNE, van der Maaten & Hinton 2008; UMAP, McInnes et al. 2018; PCA),
fgvc.metrics.confusions and fgvc.vis.embedding_map: maps of an ``fgvc.embed`` npz and of a run directory (a checkpoint
saved here, its split a small in-memory stand-in), projections, confused-pair extraction, user errors."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from fgvc.project import main as project_main
from fgvc.metrics.confusions import Pair, confused_pairs, knn_confusion, read_confusion_csv
from fgvc.vis.embedding_map import class_style, draw_embedding_map, legend_layout
from fgvc.vis.projection import project_embeddings, tsne_perplexity

CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]


def _blobs(n_per: int = 10, k: int = 3, dim: int = 16, gap: float = 10.0, seed: int = 0
           ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * gap
    labels = np.repeat(np.arange(k), n_per)
    return (centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32), labels


def _npz(path: Path, emb: np.ndarray, labels: np.ndarray, classes: list[str]) -> Path:
    np.savez(path, embeddings=emb, labels=labels.astype(np.int64),
             paths=np.array([f"img{i}.jpg" for i in range(len(labels))]), classes=np.array(classes))
    return path


# -------------------------------------------------------------- projections
def test_pca_separates_two_gaussian_blobs() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 50))
    b = rng.normal(size=(20, 50)) + 8.0  # far along the diagonal
    pts = project_embeddings(np.concatenate([a, b]), "pca", seed=0)
    assert pts.shape == (40, 2) and pts.dtype == np.float32
    first, second = pts[:20, 0], pts[20:, 0]
    assert first.max() < second.min() or second.max() < first.min()
    np.testing.assert_array_equal(pts, project_embeddings(np.concatenate([a, b]), "pca", seed=1))  # deterministic


def test_tsne_is_seeded_and_separates_blobs() -> None:
    emb, labels = _blobs(8, 3)
    pts = project_embeddings(emb, "tsne", seed=0)
    assert pts.shape == (24, 2) and np.isfinite(pts).all()
    np.testing.assert_allclose(pts, project_embeddings(emb, "tsne", seed=0))
    centres = np.stack([pts[labels == c].mean(0) for c in range(3)])
    spread = max(np.linalg.norm(pts[labels == c] - centres[c], axis=1).max() for c in range(3))
    assert min(np.linalg.norm(centres[i] - centres[j]) for i in range(3) for j in range(i)) > spread
    assert tsne_perplexity(24) == pytest.approx(23 / 3) and tsne_perplexity(1000) == 30


def test_projection_user_errors() -> None:
    from fgvc.errors import EmbeddingError

    with pytest.raises(EmbeddingError, match="choose one of tsne, umap, pca"):
        project_embeddings(np.zeros((5, 3)), "isomap")
    with pytest.raises(EmbeddingError, match="NaN"):
        project_embeddings(np.array([[0.0, np.nan]] * 5), "pca")
    with pytest.raises(EmbeddingError, match="at least 4"):
        project_embeddings(np.zeros((3, 3)), "tsne")


@pytest.mark.slow
def test_umap_projection_when_installed() -> None:
    pytest.importorskip("umap")
    emb, _ = _blobs(10, 3)
    pts = project_embeddings(emb, "umap", seed=0)
    assert pts.shape == (30, 2) and np.isfinite(pts).all()


def test_umap_missing_names_the_pip_command(monkeypatch) -> None:
    import sys

    from fgvc.errors import UserError

    monkeypatch.setitem(sys.modules, "umap", None)  # import now raises ImportError
    with pytest.raises(UserError, match="pip install umap-learn"):
        project_embeddings(np.random.default_rng(0).normal(size=(10, 4)), "umap")


# --------------------------------------------------------------- confusions
def test_confused_pairs_of_a_hand_made_matrix() -> None:
    cm = np.array([[50, 3, 0, 0],
                   [2, 40, 0, 1],
                   [0, 0, 30, 4],
                   [0, 0, 0, 60]])
    def ranked(m, top):
        return [p.unordered() for p in confused_pairs(m, top)]

    assert ranked(cm, 2) == [(0, 1, 5), (2, 3, 4)]  # both directions summed, largest first
    assert ranked(cm, 5) == [(0, 1, 5), (2, 3, 4), (1, 3, 1)]  # pairs never confused are left out
    assert ranked(np.eye(3) * 9, 5) == []
    tie = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    assert ranked(tie, 3) == [(0, 1, 1), (0, 2, 1), (1, 2, 1)]  # ties: smaller indices first


def test_knn_confusion_counts_neighbours_of_other_classes() -> None:
    emb, labels = _blobs(6, 3, gap=20.0)
    cm = knn_confusion(emb, labels, 3, k=3)
    assert cm.sum() == 18 * 3 and np.trace(cm) == 18 * 3  # separated blobs: every neighbour of the same class
    mixed = knn_confusion(np.array([[1.0, 0], [0.99, 0.1], [0, 1.0], [0.1, 0.99]]), np.array([0, 1, 0, 1]), 2, k=1)
    assert mixed.tolist() == [[0, 2], [2, 0]]  # each image's nearest neighbour is of the other class


def test_read_confusion_csv_keeps_class_names_as_text(tmp_path: Path) -> None:
    import pandas as pd

    names = ["001", "010", "002"]
    cm = np.array([[5, 1, 0], [2, 7, 0], [0, 3, 4]])
    pd.DataFrame(cm, index=names, columns=names).to_csv(tmp_path / "c.csv")
    np.testing.assert_array_equal(read_confusion_csv(tmp_path / "c.csv", names), cm)
    order = ["002", "001", "010"]  # reordered to the given class order
    np.testing.assert_array_equal(read_confusion_csv(tmp_path / "c.csv", order), cm[[2, 0, 1]][:, [2, 0, 1]])
    assert read_confusion_csv(tmp_path / "c.csv", ["a", "b", "c"]) is None
    assert read_confusion_csv(tmp_path / "missing.csv", names) is None


# ------------------------------------------------------------------ drawing
def test_styles_cover_200_classes_and_the_legend_shrinks() -> None:
    styles = {(class_style(k, 200)[0], class_style(k, 200)[1]) for k in range(200)}
    assert len(styles) == 200
    assert class_style(0, 200)[0] == class_style(20, 200)[0] and class_style(0, 200)[1] != class_style(20, 200)[1]
    cols_few, size_few = legend_layout(10)
    cols_many, size_many = legend_layout(200)
    assert cols_few == 1 and cols_many >= 4 and size_many < size_few


@pytest.mark.slow  # ~2 s
def test_draw_embedding_map_with_many_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(120).repeat(2)
    names = [f"{k:03d}.A_rather_long_species_name_{k}" for k in range(120)]
    out = draw_embedding_map(rng.normal(size=(240, 2)), labels, names, tmp_path / "m.png", [Pair(0, 5, 4, 3), Pair(3, 9, 2, 0)],
                             "many", "kNN confusions")
    assert Image.open(out).size[0] > Image.open(
        draw_embedding_map(rng.normal(size=(6, 2)), [0, 0, 1, 1, 2, 2], CLASSES, tmp_path / "few.png")).size[0]
    with pytest.raises(ValueError, match="index the 3 class names"):
        draw_embedding_map(np.zeros((2, 2)), [0, 3], CLASSES, tmp_path / "bad.png")


# ---------------------------------------------------------------------- CLI
def test_cli_on_an_npz(tmp_path: Path, capsys) -> None:
    emb, labels = _blobs(10, 3, gap=1.0)  # overlapping: kNN confusions exist
    path = _npz(tmp_path / "e.npz", emb, labels, CLASSES)
    for method in ("pca", "tsne"):
        out = tmp_path / f"{method}.png"
        assert project_main([str(path), "--method", method, "--out", str(out)]) == 0
        assert Image.open(out).size[0] > 500
    text = capsys.readouterr().out
    assert "1. " in text and "kNN confusions" in text and "<->" in text


@pytest.mark.parametrize("extra,needle", [(["--split", "train"], "--split, --checkpoint and --set apply to a run"),
                                          (["--method", "pca", "--top", "-1"], "--top must be >= 0")])
def test_cli_user_errors_are_one_line(tmp_path: Path, capsys, extra: list[str], needle: str) -> None:
    emb, labels = _blobs(5, 3)
    path = _npz(tmp_path / "e.npz", emb, labels, CLASSES)
    assert project_main([str(path), "--out", str(tmp_path / "x.png"), *extra]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


def test_cli_rejects_an_npz_without_embeddings(tmp_path: Path, capsys) -> None:
    np.savez(tmp_path / "bad.npz", features=np.zeros((3, 2)))
    assert project_main([str(tmp_path / "bad.npz"), "--out", str(tmp_path / "x.png")]) == 2
    assert "lacks the array(s) ['embeddings', 'labels', 'classes']" in capsys.readouterr().err


class _TinySplit(torch.utils.data.Dataset):
    classes = CLASSES

    def __init__(self, n: int = 12) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, 32, 32, generator=g)
        self.targets = [i % len(CLASSES) for i in range(n)]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.x[i], self.targets[i]


def _fake_run(tmp_path: Path) -> Path:
    from fgvc import config
    from fgvc.engine.builder import build_method_from_cfg
    from fgvc.engine.checkpoint import save_checkpoint

    cfg = copy.deepcopy(config.DEFAULTS)
    cfg["model"].update(name="baseline", backbone="test_resnet.r160_in1k", pretrained=False)
    cfg["data"].update(img_size=32, resize=None, root="datasets/fake-mini", num_workers=0)
    cfg["train"]["device"] = "cpu"
    method = build_method_from_cfg(cfg, len(CLASSES))
    run = tmp_path / "run"
    save_checkpoint({"model": method.state_dict(), "ema": None, "extra": {}, "config": cfg, "class_names": CLASSES,
                     "data_config": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}},
                    run / "checkpoints" / "last.pt")
    return run


def test_cli_on_a_run_reads_its_confusion_csv(tmp_path: Path, monkeypatch, capsys) -> None:
    import pandas as pd

    from fgvc.engine import builder

    run = _fake_run(tmp_path)
    monkeypatch.setattr(builder, "build_split", lambda cfg, split, train, dc: _TinySplit())
    cm = np.array([[3, 0, 1], [0, 4, 0], [6, 0, 2]])  # 0 <-> 2 confused 7 times, nothing else
    (run / "eval").mkdir()
    pd.DataFrame(cm, index=CLASSES, columns=CLASSES).to_csv(run / "eval" / "confusion.csv")
    out = tmp_path / "map.png"
    assert project_main([str(run), "--method", "pca", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"1. {CLASSES[0]} <-> {CLASSES[2]}: 7 test confusions (eval/confusion.csv)" in text
    assert "2. " not in text and Image.open(out).size[0] > 500
    # --checkpoint best of a split without a CSV: the pass's own predictions
    (run / "checkpoints" / "last.pt").rename(run / "checkpoints" / "best.pt")
    assert project_main([str(run), "--checkpoint", "best", "--method", "pca", "--out", str(out)]) == 0
    assert "eval/confusion.csv" not in capsys.readouterr().out
