"""`report(run_dir)`: one self-contained HTML page and a markdown summary of a trained run.

The HTML embeds every plot as a data URI and its CSS inline, so the single file can be
mailed or attached anywhere; the markdown links the PNGs written beside it, for a README.
"""

from __future__ import annotations

import base64
import html
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ferlab import __version__
from ferlab._io import write_text
from ferlab._markdown import markdown_table
from ferlab.errors import FerlabError
from ferlab.evaluation.comparison import TABLE_METRICS
from ferlab.evaluation.curves import plot_run_curves
from ferlab.evaluation.evaluate import evaluate_model, write_evaluation
from ferlab.models import count_parameters
from ferlab.rundir import RunDir

__all__ = ["ReportResult", "report"]

log = logging.getLogger(__name__)

#: Plot files in page order, with their headings.
FIGURES = {
    "curves": "Training curves",
    "confusion_matrix": "Confusion matrix",
    "roc": "ROC curves (one vs rest)",
    "precision_recall": "Precision-recall curves",
    "reliability": "Reliability diagram",
    "mistakes": "Most confident mistakes",
    "mistakes_gradcam": "Grad-CAM of the most confident mistakes",
    "class_examples": "Examples per class",
}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:.85em}.muted{color:#666}
"""


@dataclass(frozen=True)
class ReportResult:
    """Where the report went and the metrics it shows."""

    html: Path
    markdown: Path
    metrics: dict[str, Any]



def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _calibration_value(value: Any) -> str:
    """``{"before": a, "after": b}`` as "a -> b"; other values as they are."""
    if isinstance(value, dict) and {"before", "after"} <= set(value):
        return f"{_fmt(value['before'])} → {_fmt(value['after'])}"
    return _fmt(value)


def _rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per-class table: header and rows (class, precision, recall, F1, support, AUROC, AP)."""
    header = ["class", "precision", "recall", "F1", "support", "AUROC", "AP"]
    rows = [[name, *(_fmt(m.get(k)) for k in ("precision", "recall", "f1", "support", "auroc", "ap"))]
            for name, m in metrics["per_class"].items()]
    return header, rows


def _headline(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    photos = []
    if "detection_rate" in metrics:  # whole photos through a detector; accuracy counts a photo without a face as wrong
        photos = [("photos", str(metrics["photos"])), ("detector", metrics["detector"]),
                  ("faces found", _fmt(metrics["detection_rate"])), ("no face found", str(metrics["no_face"]))]
    return [*photos, ("images", str(metrics["samples"])),
            *((title, _fmt(metrics.get(key))) for key, title in TABLE_METRICS.items()),
            ("temperature", f"{metrics['temperature']:.3f}"), ("test-time augmentation", metrics["tta"])]


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(markdown_table(header, rows))


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _facts(run_dir: Path, metrics: dict[str, Any], summary: dict[str, Any] | None, params: int) -> list[tuple[str, str]]:
    facts = [("run", str(run_dir)), ("model", f"{metrics['architecture']} ({params:,d} parameters)"),
             ("classes", ", ".join(metrics["classes"])), ("evaluated on", f"{metrics['data']} ({metrics['split']} split)")]
    if summary:
        facts.append(("training", f"{summary.get('epochs_run')} epochs, best validation accuracy "
                                  f"{_fmt(summary.get('best_val_acc'))} at epoch {summary.get('best_epoch')}, "
                                  f"{summary.get('seconds', 0):.0f} s"))
    if metrics["left_out"]:
        facts.append(("left out (classes the model lacks)", ", ".join(f"{k}: {v}" for k, v in metrics["left_out"].items())))
    if metrics["skipped"]:
        facts.append(("unreadable images skipped", str(len(metrics["skipped"]))))
    return facts


def _render_html(title: str, facts: list[tuple[str, str]], metrics: dict[str, Any], calibration: dict[str, Any] | None,
                 figures: dict[str, Path], config: str) -> str:
    header, rows = _rows(metrics)
    matrix_header = ["true \\ predicted", *metrics["classes"]]
    matrix_rows = [[name, *map(str, counts)] for name, counts in zip(metrics["classes"], metrics["confusion_matrix"])]
    parts = [f"<h1>{html.escape(title)}</h1>", _html_table(["", ""], [list(f) for f in facts]),
             "<h2>Metrics</h2>", _html_table(["metric", "value"], [list(h) for h in _headline(metrics)]),
             "<h2>Per class</h2>", _html_table(header, rows),
             "<h2>Confusion matrix (counts)</h2>", _html_table(matrix_header, matrix_rows)]
    if calibration:
        parts += ["<h2>Calibration (fitted on the validation split)</h2>",
                  _html_table(["", ""], [[k, _calibration_value(v)] for k, v in calibration.items()])]
    for key, heading in FIGURES.items():
        if key in figures:
            parts.append(f"<h2>{html.escape(heading)}</h2><img alt=\"{html.escape(heading)}\" src=\"{_data_uri(figures[key])}\">")
    if config:
        parts += ["<h2>Configuration</h2>", f"<pre>{html.escape(config)}</pre>"]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p class=\"muted\">ferlab {__version__}, {stamp}</p>")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def _render_markdown(title: str, facts: list[tuple[str, str]], metrics: dict[str, Any], figures: dict[str, Path],
                     folder: Path) -> str:
    header, rows = _rows(metrics)
    lines = [f"## {title}", "", *(f"- {k}: {v}" for k, v in facts), "",
             _md_table(["metric", "value"], [list(h) for h in _headline(metrics)]), "", _md_table(header, rows), ""]
    lines += [f"![{heading}]({figures[key].relative_to(folder).as_posix()})" for key, heading in FIGURES.items()
              if key in figures and key in ("curves", "confusion_matrix", "reliability")]
    return "\n".join(lines) + "\n"


def report(
    run_dir: str | Path,
    data: str | Path | None = None,
    out: str | Path | None = None,
    split: str = "auto",
    tta: str | None = None,
    **photos: Any,
) -> ReportResult:
    """Evaluate a run on its test data and write ``report.html`` and ``report.md`` with the plots.

    Args:
        data: the dataset to evaluate on; default the one the run was trained on.
        out: output folder; default ``RUN_DIR/report``. Its plots and tables are rewritten each time.
        photos: `evaluate_model`'s ``detector``, ``detector_path`` and ``margin``, for whole photos.

    Raises:
        FerlabError: not a run folder, or no data to evaluate.
    """
    run = RunDir(run_dir)
    run_dir = run.path
    config = run.config.read_text(encoding="utf-8") if run.config.is_file() else ""
    if data is None:
        data = run.data_path()
        if not data:
            raise FerlabError(f"{run_dir} has no config.yaml naming its data; pass --data")
    out = Path(out) if out is not None else run_dir / "report"
    evaluation = evaluate_model(run_dir, data, split=split, tta=tta, **photos)
    figures = write_evaluation(evaluation, out)
    if run.metrics.is_file():
        figures["curves"] = plot_run_curves(run_dir, out / "curves.png")
    metrics = evaluation.metrics
    facts = _facts(run_dir, metrics, run.read_summary(), count_parameters(evaluation.model.module))
    title = f"ferlab report: {run_dir.name}"
    calibration = run.read_calibration()
    write_text(out / "report.html", _render_html(title, facts, metrics, calibration, figures, config))
    write_text(out / "report.md", _render_markdown(title, facts, metrics, figures, out))
    log.info("report written to %s", out / "report.html")
    return ReportResult(out / "report.html", out / "report.md", metrics)
