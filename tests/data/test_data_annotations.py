"""Problems (raise at once, or collect every problem) and the annotation-table reader on tiny fake files."""
from __future__ import annotations

from pathlib import Path

import pytest
from data_fakes import write_lines

from fgvc.data.annotations import Problems, check_unique, read_table
from fgvc.data.base import AnnotationError

FIELDS = [("image_id", int), ("path", str)]


def test_raising_mode_raises_the_first_problem_with_file_line_and_text(tmp_path: Path) -> None:
    path = tmp_path / "images.txt"
    write_lines(path, ["1 a.jpg", "two b.jpg", "3"])
    problems = Problems.raising()
    assert not problems.is_collecting
    with pytest.raises(AnnotationError) as e:
        read_table(path, FIELDS, "images.txt", problems)
    assert (e.value.path, e.value.line) == (path, 2)
    assert str(e.value) == (f"{path}, line 2: field 'image_id' is not an integer ('two'): 'two b.jpg' "
                            "(fix or delete this line)")


def test_collecting_mode_records_every_problem_and_keeps_the_good_rows(tmp_path: Path) -> None:
    path = tmp_path / "images.txt"
    write_lines(path, ["1 a.jpg", "two b.jpg", "3", "1 again.jpg", "4 d.jpg"])
    found: list[AnnotationError] = []
    problems = Problems.collecting(found)
    assert problems.is_collecting
    table = read_table(path, FIELDS, "images.txt", problems)
    keep = check_unique(path, table["image_id"], table["_line"], "image id", problems)
    assert [(p.line, p.problem) for p in found] == [
        (2, "field 'image_id' is not an integer ('two')"),
        (3, "expected 2 space-separated fields (image_id path) for images.txt, found 1"),
        (4, "duplicate image id 1 (first on line 1)"),
    ]
    assert table["image_id"][keep].tolist() == [1, 4] and table["_line"].tolist() == [1, 4, 5]


def test_report_without_a_line_or_without_its_text(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    write_lines(path, ["x y"])
    found: list[AnnotationError] = []
    Problems.collecting(found).report(path, None, "lists no images")
    Problems.collecting(found).report(path, 1, "bad", show_text=False)
    assert [str(e) for e in found] == [f"{path}: lists no images", f"{path}, line 1: bad"]
    with pytest.raises(AnnotationError, match="line 1: bad: 'x y'"):
        Problems.raising().report(path, 1, "bad")
