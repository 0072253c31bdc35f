import json
import re
from html.parser import HTMLParser

from PIL import Image

from ferlab.cli import main
from ferlab.evaluation import report


class _References(HTMLParser):
    """Every src/href value in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.refs += [value for name, value in attrs if name in ("src", "href") and value]


def test_report_is_one_self_contained_html_file(trained_run, tmp_path):
    result = report(trained_run, out=tmp_path / "report")
    page = result.html.read_text()
    parser = _References()
    parser.feed(page)
    assert parser.refs and all(ref.startswith("data:image/png;base64,") for ref in parser.refs)
    assert not re.search(r"(https?:)?//[\w.-]+\.\w+/|<link|<script", page)  # nothing fetched from elsewhere
    for heading in ("Training curves", "Confusion matrix", "ROC curves", "Precision-recall", "Reliability diagram",
                    "Most confident mistakes", "Examples per class", "Per class", "Configuration", "Calibration"):
        assert heading in page, heading
    assert "cnn3_bn" in page and f"{result.metrics['accuracy']:.4f}" in page


def test_report_markdown_links_files_beside_it(trained_run, tmp_path):
    result = report(trained_run, out=tmp_path / "report")
    markdown = result.markdown.read_text()
    assert "| accuracy |" in markdown and "| angry |" in markdown
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown)
    assert "curves.png" in links
    for link in links:
        with Image.open(result.markdown.parent / link) as png:
            assert png.format == "PNG"
    saved = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert saved["split"] == "test" and saved["accuracy"] == result.metrics["accuracy"]


def test_report_defaults_to_the_runs_own_data_and_folder(trained_run, tmp_path, capsys):
    assert main(["report", str(trained_run), "--out", str(tmp_path / "r")]) == 0
    assert "report in" in capsys.readouterr().out
    assert (tmp_path / "r" / "report.html").is_file()


def test_report_of_a_folder_without_a_config_needs_data(trained_run, tmp_path, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.safetensors", "model.json"):
        (folder / name).write_bytes((trained_run / name).read_bytes())
    assert main(["report", str(folder)]) == 2
    assert "pass --data" in capsys.readouterr().err
