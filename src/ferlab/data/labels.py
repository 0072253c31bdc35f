"""The canonical emotion taxonomy and the label codes of the datasets users meet.

Every sample and every model in ferlab speaks the canonical names below; dataset
codes (FER2013 indices, RAF-DB 1-7, folder names such as "Happiness") are
translated once, when a dataset is read.
"""

from __future__ import annotations

from collections.abc import Iterable

from ferlab.errors import FerlabError

__all__ = [
    "EMOTIONS",
    "DATASET_LABELS",
    "canonical_label",
    "dataset_label",
    "order_classes",
]

#: Canonical order; FER2013's indices 0-6 follow it, contempt comes last.
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt")

_SYNONYMS: dict[str, tuple[str, ...]] = {
    "angry": ("angry", "anger", "mad"),
    "disgust": ("disgust", "disgusted", "disgusting"),
    "fear": ("fear", "fearful", "afraid", "scared"),
    "happy": ("happy", "happiness", "joy", "joyful"),
    "sad": ("sad", "sadness"),
    "surprise": ("surprise", "surprised"),
    "neutral": ("neutral",),
    "contempt": ("contempt", "contemptuous"),
}
_BY_NAME: dict[str, str] = {syn: emotion for emotion, syns in _SYNONYMS.items() for syn in syns}

#: Label codes of common datasets, mapped to canonical names.
#: JAFFE and KDEF codes are the two-letter expression codes inside their file names
#: (JAFFE "KA.AN1.39" -> AN, KDEF "AF01ANS" -> AN; KDEF writes fear as AF).
DATASET_LABELS: dict[str, dict[int | str, str]] = {
    "fer2013": dict(enumerate(EMOTIONS[:7])),
    "expw": dict(enumerate(EMOTIONS[:7])),
    "rafdb": dict(enumerate(("surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"), start=1)),
    "affectnet": dict(
        enumerate(("neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt"))
    ),
    "ckplus": dict(
        enumerate(("neutral", "angry", "contempt", "disgust", "fear", "happy", "sad", "surprise"))
    ),
    "jaffe": {"AN": "angry", "DI": "disgust", "FE": "fear", "HA": "happy", "SA": "sad", "SU": "surprise", "NE": "neutral"},
    "kdef": {"AN": "angry", "DI": "disgust", "AF": "fear", "HA": "happy", "SA": "sad", "SU": "surprise", "NE": "neutral"},
}


def canonical_label(name: str) -> str:
    """Map a class name in any case, or a common synonym, to its canonical emotion.

    Raises:
        FerlabError: the name is no known emotion.
    """
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key in _BY_NAME:
        return _BY_NAME[key]
    raise FerlabError(f"unknown emotion {name!r}; known: {', '.join(EMOTIONS)} (and synonyms such as anger, happiness, sadness, surprised)")


def dataset_label(dataset: str, code: int | str) -> str:
    """Translate a dataset's label code (e.g. RAF-DB 4) into the canonical name.

    Raises:
        FerlabError: unknown dataset or code.
    """
    table = DATASET_LABELS.get(dataset.lower())
    if table is None:
        raise FerlabError(f"unknown dataset {dataset!r}; known: {', '.join(DATASET_LABELS)}")
    key: int | str = code.upper() if isinstance(code, str) else int(code)
    if key not in table:
        raise FerlabError(f"{dataset}: unknown label code {code!r}; known: {', '.join(map(str, table))}")
    return table[key]


def order_classes(labels: Iterable[str], subset: Iterable[str] | None = None) -> list[str]:
    """The class list of a run: the labels present (or `subset`), in canonical order.

    Raises:
        FerlabError: a subset name is unknown or has no samples.
    """
    present = set(labels)
    if subset is not None:
        wanted = {canonical_label(name) for name in subset}
        missing = sorted(wanted - present)
        if missing:
            raise FerlabError(f"classes {missing} were asked for but the data has none of them; it has {order_classes(present)}")
        present = wanted
    return [emotion for emotion in EMOTIONS if emotion in present]
