import os
import stat

from ferlab._io import atomic_path, write_text


def test_outputs_get_the_usual_permissions_not_owner_only(tmp_path):
    write_text(tmp_path / "a.txt", "x")
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~mask
    assert (tmp_path / "a.txt").read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_file_written_anew_in_place_of_the_temporary_one_gets_the_usual_permissions(tmp_path):
    """safetensors (model.safetensors) and others replace the temporary file rather than write into it."""
    import torch

    from ferlab.data.transforms import Preprocessing
    from ferlab.models import ModelMeta, build_model, save_model

    with atomic_path(tmp_path / "new.bin") as tmp:
        tmp.unlink()
        os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))
    meta = ModelMeta("baseline_cnn", ("a", "b"), Preprocessing(48, 1, (0.5,), (0.5,)), {})
    torch.manual_seed(0)
    save_model(build_model(meta), meta, tmp_path / "model")
    mask = os.umask(0o022)
    os.umask(mask)
    for path in (tmp_path / "new.bin", tmp_path / "model" / "model.safetensors", tmp_path / "model" / "model.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path
