"""The one markdown-table writer."""

import pytest

from ferlab._markdown import markdown_table


def test_a_table_aligns_numbers_right_and_escapes_pipes():
    assert markdown_table(["model", "acc"], [["a|b", 0.5], ["", 1]]) == [
        "| model | acc |", "|---|---:|", "| a\\|b | 0.5 |", "| | 1 |"]
    assert markdown_table(["x", "y", "z"], [], align="lrl")[1] == "|---|---:|---|"


def test_rows_and_alignments_must_fit_the_header():
    with pytest.raises(ValueError, match="a row of 1 cells in a table of 2 columns"):
        markdown_table(["a", "b"], [["only"]])
    with pytest.raises(ValueError, match="one of l/r per column"):
        markdown_table(["a", "b"], [], align="lc")
