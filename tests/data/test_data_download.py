"""fetch from local archives (md5 checked) and safe tar extraction; nothing here touches the network."""
from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import pytest
from data_fakes import make_cub, make_flowers, make_tar, tar_tree

from fgvc.data import build_dataset, download
from fgvc.data.base import DataError
from fgvc.data.download import UnsafeArchiveError, fetch, safe_extract


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _expect(monkeypatch: pytest.MonkeyPatch, name: str, md5s: dict[str, str]) -> None:
    """Pretend the official md5 of each named file is ``md5s[filename]``; never download."""
    res = [dataclasses.replace(r, md5=md5s.get(r.filename, r.md5), url="http://invalid.invalid/" + r.filename)
           for r in download.RESOURCES[name]]
    monkeypatch.setitem(download.RESOURCES, name, res)

    def no_download(*a: object, **k: object) -> None:
        raise AssertionError("tests must not download")

    monkeypatch.setattr("torchvision.datasets.utils.download_url", no_download)


@pytest.mark.parametrize("member,reason", [
    (("../x", "file", b"evil"), "'..' path component"),
    (("ok/../../x", "file", b"evil"), "'..' path component"),
    (("/abs/x", "file", b"evil"), "absolute path"),
    (("link", "sym", "../outside"), "link pointing outside"),
    (("d/link", "sym", "/etc/passwd"), "link to an absolute path"),
    (("hard", "hard", "../../etc/passwd"), "link pointing outside"),
    (("dev", "chr", None), "device"),
])
def test_safe_extract_refuses(tmp_path: Path, member: tuple, reason: str) -> None:
    tar = make_tar(tmp_path / "evil.tgz", [("good.txt", "file", b"fine"), member])
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError) as e:
        safe_extract(tar, dest)
    assert reason in str(e.value) and member[0] in str(e.value) and "nothing was extracted" in str(e.value)
    assert not (dest / "good.txt").exists() and not (tmp_path / "x").exists() and not (tmp_path / "outside").exists()


def test_safe_extract_allows_inside_links(tmp_path: Path) -> None:
    tar = make_tar(tmp_path / "ok.tar", [("a", "dir", None), ("a/f.txt", "file", b"hi"),
                                         ("a/link", "sym", "f.txt")], gz=False)
    safe_extract(tar, tmp_path / "dest")
    assert (tmp_path / "dest" / "a" / "link").read_text() == "hi"


def test_fetch_cub_from_local_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture) -> None:
    src = make_cub(tmp_path / "src", class_ids=(1, 2), n_train=2, n_test=1)
    archive = tar_tree(tmp_path / "CUB_200_2011.tgz", src / "CUB_200_2011", "CUB_200_2011")
    _expect(monkeypatch, "cub200", {"CUB_200_2011.tgz": _md5(archive)})
    root = tmp_path / "datasets"
    assert fetch("cub200", root, archive=archive, progress=False) == root
    assert len(build_dataset("cub200", root, "trainval")) == 4 and len(build_dataset("cub200", root, "test")) == 2
    assert [p.name for p in root.iterdir()] == ["CUB_200_2011"]  # no temp folder left behind
    assert "ready" in capsys.readouterr().err
    fetch("cub200", root, archive=archive, progress=False)
    assert "already present and complete" in capsys.readouterr().err


def test_fetch_refuses_md5_mismatch_unless_forced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_cub(tmp_path / "src", class_ids=(1,), n_train=1, n_test=1)
    archive = tar_tree(tmp_path / "CUB_200_2011.tgz", src / "CUB_200_2011", "CUB_200_2011")
    _expect(monkeypatch, "cub200", {"CUB_200_2011.tgz": "0" * 32})
    root = tmp_path / "datasets"
    with pytest.raises(DataError) as e:
        fetch("cub200", root, archive=archive, progress=False)
    assert f"md5 of {archive} is {_md5(archive)}, expected {'0' * 32}" in str(e.value) and "--force" in str(e.value)
    assert not (root / "CUB_200_2011").exists()
    with pytest.warns(UserWarning, match="force=True"):
        fetch("cub200", root, archive=archive, progress=False, force=True)
    assert len(build_dataset("cub200", root, "test")) == 1


def test_fetch_flowers_from_folder_of_official_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_flowers(tmp_path / "src")
    files = tmp_path / "downloads"
    files.mkdir()
    tar_tree(files / "102flowers.tgz", src / "jpg", "jpg")
    for name in ("imagelabels.mat", "setid.mat"):
        shutil.copy(src / name, files / name)
    _expect(monkeypatch, "flowers102", {n: _md5(files / n) for n in ("102flowers.tgz", "imagelabels.mat", "setid.mat")})
    root = tmp_path / "flowers"
    fetch("flowers102", root, archive=files, progress=False)
    assert len(build_dataset("flowers102", root, "trainval")) == 6 and (root / "setid.mat").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["imagelabels.mat", "jpg", "setid.mat"]


def test_fetch_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="fetch knows cub200, flowers102"):
        fetch("imagenet", tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        fetch("cub200", tmp_path / "r", archive=tmp_path / "nope.tgz")
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(b"not a tar")
    with pytest.raises(DataError, match="cannot open .* as a tar archive"):
        safe_extract(bad, tmp_path / "d")
