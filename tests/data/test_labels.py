import pytest

from ferlab.data.labels import EMOTIONS, canonical_label, dataset_label, order_classes
from ferlab.errors import FerlabError


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Happy", "happy"), ("HAPPINESS", "happy"), ("anger", "angry"), ("Sadness", "sad"),
     ("surprised", "surprise"), ("Fearful", "fear"), ("disgusted", "disgust"), ("Neutral ", "neutral"),
     ("contempt", "contempt")],
)
def test_folder_names_and_synonyms_map_to_canonical(name, expected):
    assert canonical_label(name) == expected


def test_unknown_name_is_a_clear_error():
    with pytest.raises(FerlabError, match="unknown emotion 'bored'"):
        canonical_label("bored")


@pytest.mark.parametrize(
    ("dataset", "code", "expected"),
    [("fer2013", 0, "angry"), ("fer2013", 6, "neutral"), ("rafdb", 1, "surprise"), ("rafdb", 4, "happy"),
     ("rafdb", 7, "neutral"), ("affectnet", 0, "neutral"), ("affectnet", 7, "contempt"),
     ("ckplus", 2, "contempt"), ("ckplus", 7, "surprise"), ("jaffe", "an", "angry"), ("kdef", "AF", "fear"),
     ("kdef", "SU", "surprise")],
)
def test_dataset_codes(dataset, code, expected):
    assert dataset_label(dataset, code) == expected


def test_fer2013_indices_follow_canonical_order():
    assert [dataset_label("fer2013", i) for i in range(7)] == list(EMOTIONS[:7])


def test_bad_codes_name_the_dataset():
    with pytest.raises(FerlabError, match="rafdb: unknown label code 0"):
        dataset_label("rafdb", 0)
    with pytest.raises(FerlabError, match="unknown dataset"):
        dataset_label("nope", 1)


def test_subsets_keep_canonical_order():
    present = ["neutral", "happy", "angry", "sad"]
    assert order_classes(present) == ["angry", "happy", "sad", "neutral"]
    assert order_classes(present, ["Neutral", "anger", "happiness"]) == ["angry", "happy", "neutral"]
    with pytest.raises(FerlabError, match=r"\['fear'\] were asked for"):
        order_classes(present, ["fear", "happy"])
