"""The one grid expansion behind compare's grid files and tune's grid sampler."""

from ferlab.experiments.compare import load_grid
from ferlab.experiments.grid import grid_points
from ferlab.experiments.search_space import Param, SearchSpace


def test_points_are_every_combination_with_the_first_axis_slowest():
    assert grid_points({"a": [1, 2], "b": ["x", "y", "z"]}) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"},
        {"a": 2, "b": "x"}, {"a": 2, "b": "y"}, {"a": 2, "b": "z"}]
    assert grid_points({"a": []}) == [] and grid_points({}) == [{}]


def test_a_compare_grid_and_a_search_space_over_the_same_values_give_the_same_points():
    compare = load_grid({"grid": {"optim.name": ["sgd", "adam"], "optim.lr": [0.01, 0.001]}})
    space = SearchSpace((Param("optim.name", "categorical", choices=("sgd", "adam")),
                         Param("optim.lr", "float", low=0.001, high=0.01, grid=(0.01, 0.001))))
    assert [c.values for c in compare.combinations()] == grid_points(space.grid())
