"""The documentation's CPU commands run: every ```bash block marked ``<!-- docs-test -->`` in docs/ runs here, line by
line through ``fgvc.__main__.main``, on a tiny synthetic set and a tiny run instead of the real data.

What is swapped, and only that: a run path of the guide (``runs/cub-lite0``, or the newest ``runs/<name>-<time>``,
also as a ``--set`` value such as ``model.init_from=runs/<name>-<time>``) is a tiny run (``runs/cub200_wsdan-...``
too); ``/data/other_birds``, ``../shared/data/cub200-mini`` and ``datasets`` are the synthetic set; ``ROOT`` is a
folder-per-class copy of it; ``/data/new_birds`` is a folder set of two species the tiny run never saw (``new_0``,
``new_1``: links to two synthetic classes, 3 train and 2 test images each); a photo path is a test image; recipes are
read from the repository; every ``fgvc.train`` line (and ``fgvc.ablate`` without ``--dry-run``, and ``fgvc.embed`` /
``fgvc.evaluate`` of a recipe) gets the tiny model and size of tests/conftest.py appended as ``--set`` items (a CPU
second, no weights download; a line that sets ``train.max_steps``, such as a staged recipe's smoke run, keeps its own
length), and a distillation recipe the tiny run as its teacher; ``fgvc.train --resume`` continues the run as it is (no
tiny items: the run already has them). ``python -m fgvc.datasets fetch cub200`` downloads a CUB-layout archive of the
synthetic set instead of the official one (torchvision's ``download_url`` copies the local file; the md5 expected is
that file's), then verifies and extracts it as for the real one; a block that fetches starts without ``datasets``.
``benchmarks/published.csv`` is the repository's, as for a command run from its root. A ``torchrun ... -m fgvc.train``
line runs as a subprocess on a free port (gloo on the CPU), with the tiny items. ``python -m fgvc.serve`` starts the
server in the background on a free port (``photo.jpg`` is a test image); each ``curl`` line then goes to that port and
must get a 2xx JSON answer, and at the end of the block SIGTERM must stop the server with exit code 0. Every other
line must exit 0.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- docs-test -->"
TINY = ["model.backbone=test_resnet.r160_in1k", "model.pretrained=false", "model.pretrained_file=null",
        "data.img_size=32", "data.resize=36", "data.num_workers=0", "train.epochs=1", "train.batch_size=4",
        "train.device=cpu", "train.threads=1", "train.warmup_epochs=0", "eval.batch_size=5"]
# the demo's synthetic set, made small (it is generated on first use into the tmp folder)
DEMO = ["data.root=demo-data/synthetic-parts", "data.args.num_classes=3", "data.args.images_per_class=8",
        "data.args.render_size=48"]


def marked_blocks() -> list[tuple[str, int, list[str]]]:
    """(page, index, commands) of every marked block; continuation lines joined, comments and blanks dropped."""
    found = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        text = page.read_text()
        for i, match in enumerate(re.finditer(re.escape(MARK) + r"\n```bash\n(.*?)```", text, re.DOTALL)):
            body = match.group(1).replace("\\\n", " ")
            lines = [line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            found.append((str(page.relative_to(ROOT)), i, lines))
    return found


BLOCKS = marked_blocks()


def test_the_guides_mark_blocks_for_testing() -> None:
    pages = {page for page, _, _ in BLOCKS}
    assert {"docs/getting-started.md", "docs/guides/own-dataset.md", "docs/guides/inside-a-model.md",
            "docs/guides/deploying.md", "docs/guides/embeddings.md",
            "docs/guides/adding-species.md", "docs/guides/ablations.md", "docs/guides/paper-recipe.md",
            "docs/methods/simclr.md", "docs/guides/multi-gpu.md", "docs/guides/speed.md", "docs/guides/troubleshooting.md",
            "docs/guides/serving.md"} <= pages


def _folder_copy(cub_root: Path, out: Path) -> Path:
    """ROOT/<split>/<class>/*.jpg from a CUB-layout set (train split also copied as val), and ROOT/manifest.csv
    listing the same files."""
    base = cub_root / "CUB_200_2011"
    paths = dict(line.split(" ", 1) for line in (base / "images.txt").read_text().splitlines())
    is_train = dict(line.split() for line in (base / "train_test_split.txt").read_text().splitlines())
    rows = ["path,label,split"]
    for image_id, rel in paths.items():
        for split in (["train", "val"] if is_train[image_id] == "1" else ["test"]):
            target = out / split / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(base / "images" / rel, target)
            rows.append(f"{split}/{rel},{rel.split('/')[0]},{split}")
    (out / "manifest.csv").write_text("\n".join(rows) + "\n")
    return out


def _new_species(cub_root: Path, out: Path) -> Path:
    """``out/{train,test}/new_<k>/``: links to the images of the set's first two classes under names no run has
    (3 train, 2 test images each)."""
    for k, cls in enumerate(sorted(p for p in (cub_root / "CUB_200_2011" / "images").iterdir() if p.is_dir())[:2]):
        files = sorted(cls.glob("*.jpg"))
        for split, chosen in (("train", files[:3]), ("test", files[3:5])):
            (out / split / f"new_{k}").mkdir(parents=True, exist_ok=True)
            for f in chosen:
                (out / split / f"new_{k}" / f.name).symlink_to(f)
    return out


def _fake_download(cub_root: Path, monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``fetch cub200`` gets ``CUB_200_2011.tgz`` made from the synthetic set (its md5 expected) instead of the web."""
    from fgvc.data import download

    folder.mkdir()
    archive = folder / "CUB_200_2011.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(cub_root / "CUB_200_2011", arcname="CUB_200_2011")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    res = [dataclasses.replace(r, md5=md5) for r in download.RESOURCES["cub200"]]
    monkeypatch.setitem(download.RESOURCES, "cub200", res)

    def copy(url: str, root: str, filename: str, md5: str | None = None) -> None:
        assert url == res[0].url and filename == "CUB_200_2011.tgz"
        shutil.copy(archive, Path(root) / filename)

    monkeypatch.setattr("torchvision.datasets.utils.download_url", copy)


def _torchrun(argv: list[str], cwd: Path) -> None:
    """``["torchrun", *launcher options, "-m", command, *args]`` as a subprocess (a free port, one thread each)."""
    at = argv.index("-m")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", *argv[1:at], f"--master_port={port}", "-m",
           f"fgvc.{argv[at + 1]}", *argv[at + 2:]]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    env.pop("WORLD_SIZE", None)
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "device cpu x2" in res.stdout, res.stdout[-3000:]


class _Server:
    """``python -m fgvc.serve TARGET`` in the background on a free port until :meth:`stop` (SIGTERM, which must exit
    0); ``curl`` lines of the guide go to that port."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.log = cwd / "serve.log"
        env = dict(os.environ, OMP_NUM_THREADS="1")
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "fgvc.serve", *args, "--port", str(self.port)],
                                         cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while True:  # /health answers 200 once the model answered its warm-up batch
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, "server not healthy after 180 s: " + self.log.read_text()[-3000:]
            time.sleep(0.5)

    def curl(self, argv: list[str], cwd: Path) -> None:
        args = [a.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}") for a in argv[1:]]
        res = subprocess.run(["curl", "--silent", "--show-error", "--fail", *args], cwd=cwd, capture_output=True,
                             text=True, timeout=60, check=False)
        assert res.returncode == 0, f"{argv}: {res.stderr} {self.log.read_text()[-3000:]}"
        json.loads(res.stdout)  # every endpoint the guide calls answers JSON

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=60) == 0, self.log.read_text()[-3000:]


def _expand(line: str, run: Path | None) -> list[list[str]]:
    """One documented line -> the argv lists of its fgvc commands (``a && b`` is two); a torchrun line keeps
    ``torchrun`` and its launcher options before ``-m`` and the command's name."""
    out = []
    for part in line.split("&&"):
        argv = shlex.split(part, comments=True)
        if not argv:
            continue
        if argv[0] == "curl":  # a request to the server a serve line started
            out.append(argv)
            continue
        launcher = argv[:argv.index("-m")] if argv[0] == "torchrun" and "-m" in argv else []
        if launcher:
            argv = ["python", *argv[len(launcher):]]
        assert argv[:2] == ["python", "-m"] and argv[2].startswith("fgvc."), f"not an fgvc command: {part}"
        name, args = argv[2].split(".", 1)[1], argv[3:]
        args = [str(ROOT / a) if a.startswith("recipes/") else a for a in args]
        args = ["photos" if a in ("~/photos/garden", "my_photo.jpg") else a for a in args]
        args = [re.sub(r"^runs/cub200_wsdan-[\w.-]+$", "runs/cub-lite0", a) for a in args]  # a named example run
        args = [a.replace("/data/other_birds", "datasets") for a in args]  # another data set: the synthetic one
        args = ["new_birds" if a == "/data/new_birds" else a for a in args]  # species to add: two unseen classes
        args = [a.replace("../shared/data/cub200-mini", "datasets") for a in args]  # the shared set: the synthetic one
        if run is not None:
            args = [re.sub(r"(^|=)runs/[\w.-]+-<time>", lambda m: m.group(1) + str(run), a) for a in args]
        if name == "train" and "--resume" not in args:
            # a line that caps its own length (train.max_steps, e.g. a staged recipe's smoke run) keeps it
            extra = [t for t in TINY if not (t == "train.epochs=1" and any("train.max_steps=" in a for a in args))]
            extra += (DEMO if any(a.endswith("demo.yaml") for a in args) else [])
            if any(a.endswith("_distill.yaml") for a in args):  # the teacher the guide trains first: the tiny run
                extra.append("distill.teacher=runs/cub-lite0")
            args += ["--set", *extra]
        if name in ("embed", "evaluate") and args and args[0].endswith(".yaml"):  # a recipe's frozen backbone: tiny
            args += ["--set", *TINY]
        if name == "ablate" and "--dry-run" not in args:  # a study that trains: the tiny model after its --set
            at = args.index("--set") + 1 if "--set" in args else len(args)
            while at < len(args) and not args[at].startswith("--"):
                at += 1
            args[at:at] = TINY if "--set" in args else ["--set", *TINY]
        out.append([*launcher, *(["-m"] if launcher else []), name, *args])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("page,index,lines", BLOCKS, ids=[f"{p}#{i}" for p, i, _ in BLOCKS])
def test_marked_block_runs(page: str, index: int, lines: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           synthetic_set, tiny_run) -> None:  # type: ignore[no-untyped-def]
    from fgvc.__main__ import main

    syn = synthetic_set()
    monkeypatch.chdir(tmp_path)
    if any("fgvc.datasets fetch" in line for line in lines):
        _fake_download(syn, monkeypatch, tmp_path / "download")
    else:
        (tmp_path / "datasets").symlink_to(syn)
    _folder_copy(syn, tmp_path / "ROOT")
    _new_species(syn, tmp_path / "new_birds")
    shutil.copytree(syn / "CUB_200_2011" / "images", tmp_path / "photos")
    shutil.copytree(tiny_run(syn), tmp_path / "runs" / "cub-lite0")
    (tmp_path / "benchmarks").mkdir()  # the published numbers bench report reads, as in the repository
    (tmp_path / "benchmarks" / "published.csv").symlink_to(ROOT / "benchmarks" / "published.csv")
    shutil.copy(min((tmp_path / "photos").rglob("*.jpg")), tmp_path / "photo.jpg")
    run, server = None, None
    try:
        for line in lines:
            for argv in _expand(line, run):
                if argv[0] == "torchrun":
                    _torchrun(argv, tmp_path)
                elif argv[0] == "serve":
                    server = _Server(argv[1:], tmp_path)
                elif argv[0] == "curl":
                    assert server is not None, f"{page}: curl before a serve line: {line}"
                    server.curl(argv, tmp_path)
                else:
                    assert main(argv) == 0, f"{page}: {line}"
                if (argv[argv.index("-m") + 1] if argv[0] == "torchrun" else argv[0]) == "train":
                    run = max((p for p in (tmp_path / "runs").iterdir() if p.name != "cub-lite0"),
                              key=lambda p: p.stat().st_mtime, default=run)
        if server is not None:
            server.stop()
            server = None
    finally:
        if server is not None:
            server.proc.kill()
            server.proc.wait()
