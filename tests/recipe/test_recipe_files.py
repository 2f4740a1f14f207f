from pathlib import Path

import pytest

from torchslim.recipe import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    names = {p.stem for p in RECIPES}
    assert {"deep-compression-lenet300", "deep-compression-lenet5", "demo-lenet300"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipes_validate(path):
    r = load_recipe(path)
    assert r.name == path.stem and r.stages[r.baseline].kind == "train"
    if path.stem.startswith("deep-compression"):
        assert [s.kind for s in r.stages][-1] == "codec.encode"
