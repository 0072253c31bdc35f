"""The shipped catalog that `ferlab models` lists: the registry as it is, readable without torch."""

from ferlab.models.catalog import CATALOG_PATH, read_catalog, write_catalog
from ferlab.models.registry import list_models
from ferlab.models.summary import summarize_models


def test_the_shipped_catalog_is_the_registry_as_it_is():
    assert read_catalog() == summarize_models(), f"{CATALOG_PATH} is stale: run python -m ferlab.models.catalog"
    assert [s.name for s in read_catalog()] == list_models()


def test_read_catalog_filters_by_pattern_and_write_catalog_round_trips(tmp_path):
    path = write_catalog(tmp_path / "catalog.json")
    assert read_catalog(path=path) == read_catalog()
    assert [s.name for s in read_catalog("cnn*", path)] == list_models("cnn*") != []
    assert read_catalog("nothing*", path) == []
