import pytest

from rwkvlite.loaders import save_model

from ..conftest import make_model
from .files import TEXT


@pytest.fixture(scope="session")
def sources(tmp_path_factory):
    """version -> (folder, checkpoint, calibration text) of a small random model, made once."""
    made = {}

    def source(version):
        if version not in made:
            folder = tmp_path_factory.mktemp(f"rt{version}")
            save_model(make_model(version), folder / "m.safetensors")
            (folder / "t.txt").write_text(TEXT)
            made[version] = folder, folder / "m.safetensors", folder / "t.txt"
        return made[version]

    return source


@pytest.fixture(scope="session")
def source(sources):
    return sources("7")
