"""Issue 21: a missing optional package is a one-line error naming the right extra, for each extra.

Absence is simulated in a subprocess by a meta-path finder that refuses the package (nothing is
uninstalled): ``onnx`` -> ``autoseg[onnx]`` (export-model --onnx, predict --backend onnxruntime),
``openvino`` -> ``autoseg[openvino]`` (predict --backend openvino).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Block())
for name in list(sys.modules):
    if name.split(".")[0] in {blocked!r}:
        del sys.modules[name]
from autoseg.cli import main
raise SystemExit(main({argv!r}))
"""


def run_without(blocked: set[str], argv: list[str]) -> subprocess.CompletedProcess:
    code = BLOCK.format(blocked=blocked, argv=argv)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("blocked", "backend", "extra"),
    [({"onnxruntime"}, "onnxruntime", "onnx"), ({"openvino"}, "openvino", "openvino")],
)
def test_predict_backend_without_its_package_names_its_extra(scenario, tmp_path, blocked, backend, extra):
    scn, _ = scenario
    out = tmp_path / "out"
    argv = ["predict", "-i", str(scn.heldout), "-o", str(out), "-m", str(scn.model()), "--backend", backend]
    result = run_without(blocked, [*argv, "--device", "cpu"])
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert f"--backend {backend}: needs the Python package {sorted(blocked)[0]!r}" in result.stderr
    assert f"pip install 'autoseg[{extra}]'" in result.stderr
    assert not out.exists()


def test_export_onnx_without_onnx_names_the_onnx_extra(scenario, tmp_path):
    scn, _ = scenario
    out = tmp_path / "model.zip"
    argv = ["export-model", str(scn.raw), "-o", str(out), "--onnx", *scn.roots("ref")]
    result = run_without({"onnx"}, argv)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert (
        "needs the Python package 'onnx'" in result.stderr and "pip install 'autoseg[onnx]'" in result.stderr
    )
    assert not out.exists()
