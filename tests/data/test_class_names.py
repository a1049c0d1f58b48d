"""Class names as prompt words (fgvc.data.class_names): CUB folders, Flowers' cat_to_name.json, image folders."""
from __future__ import annotations

from pathlib import Path

import pytest

from fgvc.data import build_dataset
from fgvc.data.class_names import cub_display_name, folder_display_name, prompt_names, text_domain
from fgvc.errors import DataError


@pytest.mark.parametrize("folder,name", [
    ("001.Black_footed_Albatross", "Black-footed Albatross"),
    ("Black_footed_Albatross", "Black-footed Albatross"),  # the reader's classes have the prefix stripped already
    ("020.Yellow_breasted_Chat", "Yellow-breasted Chat"),
    ("138.Tree_Swallow", "Tree Swallow"),
    ("116.Chipping_Sparrow", "Chipping Sparrow"),
    ("069.Rufous_Hummingbird", "Rufous Hummingbird"),
    ("174.Palm_Warbler", "Palm Warbler"),
    ("171.Myrtle_Warbler", "Myrtle Warbler"),
    ("159.Black_and_white_Warbler", "Black-and-white Warbler"),
    ("124.Le_Conte_Sparrow", "Le Conte Sparrow"),
    ("125.Nelson_Sharp_tailed_Sparrow", "Nelson Sharp-tailed Sparrow"),
    ("034.Gray_crowned_Rosy_Finch", "Gray-crowned Rosy Finch"),
    ("077.Tropical_Kingbird", "Tropical Kingbird"),
    ("plain_stripes_circle", "plain stripes circle"),  # the synthetic set's lower-case names: spaces only
])
def test_cub_names(folder: str, name: str) -> None:
    assert cub_display_name(folder) == name


def test_cub_reader_classes_become_prompt_names(fake_cub: Path) -> None:
    ds = build_dataset("cub200", fake_cub, "test")
    assert ds.classes == ["Bird_3", "Bird_7", "Bird_12"]
    assert prompt_names("cub200", ds.classes) == ["Bird 3", "Bird 7", "Bird 12"]


def test_flowers_names_come_from_cat_to_name(fake_flowers: Path) -> None:
    ds = build_dataset("flowers102", fake_flowers, "train")
    (fake_flowers / "cat_to_name.json").write_text('{"2": "pink  primrose", "5": "rose", "7": "x", "9": "tulip"}')
    named = build_dataset("flowers102", fake_flowers, "train")
    assert prompt_names("flowers102", named.classes) == ["pink primrose", "rose", "tulip"]  # class 7: no image listed
    with pytest.raises(DataError, match="cat_to_name.json"):  # the fixture's file names 5 and 9 only: class_2 ...
        prompt_names("flowers102", ds.classes)


def test_folder_and_csv_names_turn_underscores_into_spaces() -> None:
    assert folder_display_name("snow_leopard") == "snow leopard"
    assert prompt_names("folder", ["snow_leopard", "Red_Fox", "lynx"]) == ["snow leopard", "Red Fox", "lynx"]
    assert prompt_names("csv", ["great_grey__owl"]) == ["great grey owl"]
    with pytest.raises(DataError, match="no name"):
        prompt_names("folder", ["class_3", "owl"])


def test_text_domain_picks_the_default_templates() -> None:
    assert [text_domain(d) for d in ("cub200", "CUB200", "flowers102", "folder", "synthetic")] == [
        "birds", "birds", "flowers", "generic", "generic"]
