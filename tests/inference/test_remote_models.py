"""A trained model shipped through a hub folder (export-model --hub) and used from a URL or hf:// served on
127.0.0.1: predictions equal the local model's, a wrong checksum is refused, and the cache works offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from autoseg.cli import main
from autoseg.io.images import read_image
from tests.io.loopback import Content, HubRepo, folder_files, serve

CASES = ("case_000", "case_001", "case_002")
FAST = ["--no-tta", "-f", "0"]


@pytest.fixture(scope="module")
def hub_folder(trained: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hub") / "easy-model"
    paths = [f"paths.results={trained['root'] / 'results'}"]
    args = ["export-model", str(trained["raw"]), "-c", "3d_fullres", "--hub", str(folder)]
    assert main([*args, "--license", "apache-2.0", *paths]) == 0
    return folder


@pytest.fixture(scope="module")
def local_prediction(trained: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local")
    args = ["predict", "-i", str(trained["heldout"] / "imagesTr"), "-o", str(out), *FAST]
    assert main([*args, "-m", str(trained["results"]), "-c", "3d_fullres"]) == 0
    return out


def _predict(trained: dict[str, Path], source: str, out: Path) -> int:
    return main(["predict", "-i", str(trained["heldout"] / "imagesTr"), "-o", str(out), "-m", source, *FAST])


def _same(a: Path, b: Path) -> None:
    for case in CASES:
        assert np.array_equal(read_image(a / f"{case}.nii.gz")[0], read_image(b / f"{case}.nii.gz")[0]), case


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in ("AUTOSEG_OFFLINE", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AUTOSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return tmp_path / "cache"


def test_hub_folder_has_archive_checksum_and_model_card_header(hub_folder):
    sha = (hub_folder / "model.zip.sha256").read_text().split()[0]
    import hashlib

    assert hashlib.sha256((hub_folder / "model.zip").read_bytes()).hexdigest() == sha
    readme = (hub_folder / "README.md").read_text()
    assert readme.startswith("---\n")
    meta = yaml.safe_load(readme.split("---\n")[1])
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "autoseg"
    assert meta["autoseg"]["sha256"] == sha
    assert meta["autoseg"]["labels"] == {"background": 0, "class_1": 1}
    assert list(meta["autoseg"]["channels"].values()) == ["T1"]
    assert len(meta["autoseg"]["spacing_mm"]["3d_fullres"]) == 3
    metrics = meta["model-index"][0]["results"][0]["metrics"]
    assert metrics and all(m["type"] == "dice" and 0 <= m["value"] <= 1 for m in metrics)
    assert "# Model card" in readme and f"#sha256={sha}" in readme
    assert "lfs" in (hub_folder / ".gitattributes").read_text()


def test_predict_from_a_url_checksum_failure_and_offline_cache(
    trained, hub_folder, local_prediction, cache, tmp_path, monkeypatch, capsys
):
    sha = (hub_folder / "model.zip.sha256").read_text().split()[0]
    with serve(Content(files=folder_files(hub_folder))) as base:
        url = f"{base}/model.zip"
        assert _predict(trained, f"{url}#sha256={'0' * 64}", tmp_path / "bad") == 1
        err = capsys.readouterr().err
        assert "does not match the expected" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
        assert _predict(trained, f"{url}#sha256={sha}", tmp_path / "url") == 0
    _same(tmp_path / "url", local_prediction)
    monkeypatch.setenv("AUTOSEG_OFFLINE", "1")  # and the server is gone: the cache serves it
    assert _predict(trained, f"{url}#sha256={sha}", tmp_path / "offline") == 0
    _same(tmp_path / "offline", local_prediction)


def test_predict_from_the_hub_and_offline_reuse(
    trained, hub_folder, local_prediction, cache, tmp_path, monkeypatch
):
    pytest.importorskip("huggingface_hub")
    repo = HubRepo(folder_files(hub_folder))
    repo.refs["v1"] = repo.commit
    with serve(Content(repos={"lab/easy-model": repo})) as base:
        monkeypatch.setenv("HF_ENDPOINT", base)
        assert _predict(trained, "hf://lab/easy-model@v1", tmp_path / "hub") == 0
    _same(tmp_path / "hub", local_prediction)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _predict(trained, "hf://lab/easy-model@v1", tmp_path / "offline") == 0
    _same(tmp_path / "offline", local_prediction)
