"""Model sources from a URL or a hub (autoseg.io.remote), against servers on 127.0.0.1 only: download
into the cache, checksum failure, offline reuse, and one-line errors."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from autoseg.io.remote import RemoteSourceError, cache_root, is_remote, resolve_source
from tests.io.loopback import Content, HubRepo, serve


def _archive(text: str = "weights") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("model.json", '{"kind": "model"}')
        zf.writestr("weights.bin", text * 100)
    return buffer.getvalue()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in ("AUTOSEG_OFFLINE", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AUTOSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return tmp_path / "cache"


def test_local_paths_are_returned_unchanged_and_cache_location(tmp_path, monkeypatch):
    assert resolve_source("results/Dataset004_X") == Path("results/Dataset004_X")
    assert not is_remote("/data/model.zip") and is_remote("hf://a/b") and is_remote("https://x/m.zip")
    monkeypatch.delenv("AUTOSEG_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "autoseg"
    monkeypatch.setenv("AUTOSEG_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"


def test_malformed_sources_are_refused_with_the_fix(cache):
    sha = "0" * 64
    with pytest.raises(RemoteSourceError, match=r"add the archive's checksum as .*#sha256="):
        resolve_source("https://example.org/model.zip")
    with pytest.raises(RemoteSourceError, match="plain http is accepted only from this machine"):
        resolve_source(f"http://example.org/model.zip#sha256={sha}")
    with pytest.raises(RemoteSourceError, match=r"hf://OWNER/NAME"):
        resolve_source("hf://just-a-name")
    assert not cache.exists()  # nothing fetched, nothing written


def test_url_download_checksum_failure_and_offline_reuse(cache, monkeypatch):
    data = _archive()
    sha = hashlib.sha256(data).hexdigest()
    content = Content(files={"models/model.zip": data})
    with serve(content) as base:
        url = f"{base}/models/model.zip"
        wrong = "f" * 64
        with pytest.raises(RemoteSourceError, match=f"does not match the expected {wrong}") as err:
            resolve_source(f"{url}#sha256={wrong}")
        assert "\n" not in str(err.value)
        assert not any(p.is_file() for p in cache.rglob("*"))  # nothing half-written or kept
        path = resolve_source(f"{url}#sha256={sha.upper()}")
        assert path == cache / "url" / sha / "model.zip" and path.read_bytes() == data
        hits = len(content.hits)
        assert resolve_source(f"{url}#sha256={sha}") == path
        assert len(content.hits) == hits  # the cached file is used without asking the server
        with pytest.raises(RemoteSourceError, match="answered 404"):
            resolve_source(f"{base}/models/other.zip#sha256={sha}")
    # the server is gone: the cached model still resolves, also in offline mode
    assert resolve_source(f"{url}#sha256={sha}") == path
    monkeypatch.setenv("AUTOSEG_OFFLINE", "1")
    assert resolve_source(f"{url}#sha256={sha}") == path
    other = hashlib.sha256(b"x").hexdigest()
    with pytest.raises(RemoteSourceError, match=r"not in the cache .* downloads are off"):
        resolve_source(f"{url}#sha256={other}")
    monkeypatch.delenv("AUTOSEG_OFFLINE")
    with pytest.raises(RemoteSourceError, match=r"cannot download .* check the network"):
        resolve_source(f"{url}#sha256={other}")
    path.write_bytes(b"damaged")  # a damaged cache entry is not used
    with pytest.raises(RemoteSourceError, match="cannot download"):
        resolve_source(f"{url}#sha256={sha}")


def test_hub_snapshot_revision_offline_reuse_and_errors(cache, monkeypatch):
    pytest.importorskip("huggingface_hub")
    data = _archive()
    sha = hashlib.sha256(data).hexdigest()
    files = {"model.zip": data, "model.zip.sha256": f"{sha}  model.zip\n".encode(), "README.md": b"# card\n"}
    easy = HubRepo(files)
    easy.refs["v1"] = easy.commit
    bad = dict(files, **{"model.zip.sha256": f"{'0' * 64}  model.zip\n".encode()})
    corrupt = bytes(reversed(data))  # same size, other bytes than the ETag (the sha256) says
    content = Content(
        repos={
            "lab/easy": easy,
            "lab/tampered": HubRepo(bad),
            "lab/corrupt": HubRepo(files, served={"model.zip": corrupt}),
        }
    )
    with serve(content) as base:
        monkeypatch.setenv("HF_ENDPOINT", base)
        path = resolve_source("hf://lab/easy@v1")
        assert path.name == "model.zip" and path.read_bytes() == data
        assert str(path).startswith(str(cache / "hf"))
        assert (path.parent / "README.md").read_bytes() == b"# card\n"
        assert any(h.startswith("GET /lab/easy/resolve/") for h in content.hits)
        with pytest.raises(RemoteSourceError, match="has no such repository"):
            resolve_source("hf://lab/missing")
        with pytest.raises(RemoteSourceError, match="has no such revision"):
            resolve_source("hf://lab/easy@v9")
        with pytest.raises(RemoteSourceError, match=r"model.zip has sha256 .* but the repository's"):
            resolve_source("hf://lab/tampered")
        with pytest.raises(RemoteSourceError, match=r"but the hub's ETag says .* removed from the cache"):
            resolve_source("hf://lab/corrupt")
        content.repos["lab/corrupt"].served.clear()  # the hub serves the right bytes again: a retry works
        assert resolve_source("hf://lab/corrupt").read_bytes() == data
    # the hub is gone: the cached snapshot is used, in offline mode too; nothing cached is an error
    assert resolve_source("hf://lab/easy@v1") == path
    with pytest.raises(RemoteSourceError, match="cannot be reached"):
        resolve_source("hf://lab/other")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_source("hf://lab/easy@v1") == path
    with pytest.raises(RemoteSourceError, match=r"not in the cache .* run once with the network"):
        resolve_source("hf://lab/other")
