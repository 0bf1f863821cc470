"""Safe loading beyond what tests/test_config.py (YAML, _BASE_) and tests/engine/test_checkpoint.py
(.pkl / .pth pickle refusal) prove: augmentation files, and files tools read as inputs."""
from __future__ import annotations

import pytest

from cxr.data.augmentations import build_albumentations


@pytest.mark.parametrize("ext", [".yaml", ".json"])
def test_albumentations_file_with_code_is_refused_and_never_runs(tmp_path, ext):
    marker = tmp_path / "pwned"
    path = tmp_path / f"aug{ext}"
    if ext == ".yaml":
        path.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    else:  # a class outside albumentations' registry
        path.write_text('{"transform": {"__class_fullname__": "os.system", "command": "x"}}')
    with pytest.raises(ValueError, match=f"PRESET.*{path.name}.*not a valid albumentations"):
        build_albumentations(str(path))
    assert not marker.exists()
