"""``autoseg export-model D --container OUT/``: a challenge container's build context, and its entrypoint.

``OUT/`` holds everything ``docker build`` needs::

    Dockerfile      FROM the project's image (the repository's Dockerfile, ``autoseg:<version>``)
    model.zip       the model archive (with its model card)
    entrypoint.py   segments every image in /input into /output, logs the seconds per case
    README.md       how to build, run and test it

The entrypoint reads its folders from ``--input`` / ``--output`` or ``AUTOSEG_INPUT`` /
``AUTOSEG_OUTPUT`` (default ``/input`` and ``/output``), so it runs outside Docker as well (the
tests do). Inputs are a folder in raw naming (``<case>_0000.nii.gz``), or, for a one-channel model,
any image files below ``/input`` (``.nii.gz``, ``.mha``, ``.nrrd``, ...), each a case named after
its file. Every mask has its input's geometry and file type. The seconds each case took go to
stdout and to ``<output>/time_per_case.tsv``; ``predict.json`` records the run.

Example:
    >>> write_container(Path("challenge"), Path("model.zip"))  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["entrypoint_main", "write_container"]

DOCKERFILE = """\
# syntax=docker/dockerfile:1
#
# A challenge container for one autoseg model: it segments every image in /input into /output.
# Build the project's image first (in the autoseg repository: docker build -t autoseg:{version} .),
# then, in this folder:
#
#   docker build -t my-model .
#   docker run --rm --gpus all --network none -v /path/in:/input:ro -v /path/out:/output my-model
ARG AUTOSEG_IMAGE=autoseg:{version}
FROM ${{AUTOSEG_IMAGE}}

LABEL org.opencontainers.image.title="autoseg model {model}" \\
      org.opencontainers.image.description="Segments every image in /input into /output"

ENV AUTOSEG_MODEL=/opt/model/model.zip \\
    AUTOSEG_INPUT=/input \\
    AUTOSEG_OUTPUT=/output \\
    AUTOSEG_BACKEND={backend}

COPY model.zip entrypoint.py /opt/model/
{install}WORKDIR /tmp
USER 10001:10001
ENTRYPOINT ["python3", "/opt/model/entrypoint.py"]
"""

ENTRYPOINT = '''\
#!/usr/bin/env python3
"""Segment every image in $AUTOSEG_INPUT (/input) into $AUTOSEG_OUTPUT (/output); log seconds per case.

Written by `autoseg export-model --container`; options: python3 entrypoint.py --help.
"""

import sys
from pathlib import Path

from autoseg.export.container import entrypoint_main

if __name__ == "__main__":
    raise SystemExit(entrypoint_main(sys.argv[1:], default_model=Path(__file__).with_name("model.zip")))
'''

README = """\
# Challenge container: {model}

- `Dockerfile`: FROM the autoseg image (`docker build -t autoseg:{version} .` in the autoseg repository).
- `model.zip`: the model archive; `MODEL_CARD.md` inside it describes the model and its input.
- `entrypoint.py`: segments every image in `/input` into `/output` with the input's geometry and file
  type, and writes the seconds per case to stdout and `/output/time_per_case.tsv`.

Test without Docker: `python3 entrypoint.py --input IN --output OUT` (or `AUTOSEG_INPUT` / `AUTOSEG_OUTPUT`).
Backend: `{backend}` (`AUTOSEG_BACKEND`); device: `AUTOSEG_DEVICE` (default: a GPU if there is one).
"""


def write_container(folder: Path, archive: Path, backend: str = "torch") -> Path:
    """Write the build context into ``folder`` (created), copying ``archive`` there as model.zip."""
    from autoseg import __version__

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model.zip"
    if archive.resolve() != target.resolve():
        shutil.copyfile(archive, target)
    fields = {"version": __version__, "model": archive.stem, "backend": backend, "install": _install(backend)}
    (folder / "Dockerfile").write_text(DOCKERFILE.format(**fields))
    (folder / "entrypoint.py").write_text(ENTRYPOINT)
    (folder / "entrypoint.py").chmod(0o755)
    (folder / "README.md").write_text(README.format(**fields))
    return folder


def _install(backend: str) -> str:
    """Dockerfile lines installing the backend's runtime at the version this export was checked with."""
    import importlib.metadata as md

    package = {"onnxruntime": "onnxruntime", "openvino": "openvino"}.get(backend)
    if package is None:
        return ""
    try:
        pin = f"{package}=={md.version(package)}"
    except md.PackageNotFoundError as err:
        raise ValueError(f"--container-backend {backend}: {package} is not installed here to pin it") from err
    return f"USER 0\nRUN python3 -m pip install --no-cache-dir --break-system-packages {pin}\n"


def _cases(folder: Path, channels: list[str]) -> list[Any]:
    """Raw naming if the folder uses it; else every image file below it (one-channel models)."""
    from autoseg.inference.inputs import IMAGE_ENDINGS, discover_inputs, file_case

    try:
        return discover_inputs(folder, channels)
    except FileNotFoundError:
        pass
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(IMAGE_ENDINGS))
    if not files:
        raise FileNotFoundError(f"{folder} holds no images ({', '.join(IMAGE_ENDINGS)})")
    return [file_case(p, len(channels)) for p in files]


def _parser(default_model: Path | None) -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(description="Segment every image in the input folder into the output folder.")
    p.add_argument("--input", type=Path, default=Path(env("AUTOSEG_INPUT", "/input")))
    p.add_argument("--output", type=Path, default=Path(env("AUTOSEG_OUTPUT", "/output")))
    p.add_argument(
        "--model", type=Path, default=Path(env("AUTOSEG_MODEL", str(default_model or "model.zip")))
    )
    p.add_argument("--backend", default=env("AUTOSEG_BACKEND", "torch"))
    p.add_argument("--device", default=env("AUTOSEG_DEVICE", "auto"))
    p.add_argument("--no-tta", action="store_true", default=env("AUTOSEG_NO_TTA") == "1")
    return p


def entrypoint_main(argv: Sequence[str], default_model: Path | None = None) -> int:
    """The container's entrypoint (see the module docstring); 0 when every case was segmented."""
    from autoseg.export.model_card import card_summary, read_model_card
    from autoseg.inference.model import open_model
    from autoseg.inference.predictor import ConfigurationPredictor, PredictOptions
    from autoseg.inference.run import predict_cases
    from autoseg.utils.device import pick_device

    args = _parser(default_model).parse_args(list(argv))
    start = time.perf_counter()
    device = pick_device(args.device)
    options = PredictOptions(tta=not args.no_tta, backend=args.backend)
    with open_model(args.model) as model:
        card = read_model_card(model.root)
        if card is not None:
            print(card_summary(card), flush=True)
        selection = model.selection or {}
        # what the archive holds (export-model chose it); the selection's post-processing if it matches
        configs = model.configurations()
        if sorted(selection.get("configurations") or []) == configs:
            configs = list(selection["configurations"])
        else:
            selection = {}
        trained = [model.configuration(name) for name in configs]
        predictors = [ConfigurationPredictor(t, t.folds, device, options) for t in trained]
        cases = _cases(args.input, list(predictors[0].plans.channel_names.values()))
        spec = None
        if selection.get("postprocessing"):
            from autoseg.postprocessing.components import PostprocessingSpec

            spec = PostprocessingSpec.from_dict(selection["postprocessing"])
        loaded = time.perf_counter() - start
        summary = predict_cases(cases, predictors, args.output, spec, record={"model": args.model.name})
    _log_times(summary, args.output, loaded, time.perf_counter() - start)
    return 1 if summary["failed"] else 0


def _log_times(summary: dict[str, Any], output: Path, loaded: float, total: float) -> None:
    rows = ["case\tseconds\tstatus"]
    previous = 0.0
    for case in summary["cases"]:
        finished = float(case.get("finished_s", previous))
        rows.append(f"{case['case']}\t{finished - previous:.2f}\t{'error' if 'error' in case else 'ok'}")
        previous = finished
    n = len(summary["cases"])
    rows.append(
        f"# start-up {loaded:.2f} s, total {total:.2f} s, {n} case(s), {total / max(n, 1):.2f} s per case"
    )
    text = "\n".join(rows) + "\n"
    sys.stdout.write(text)
    (output / "time_per_case.tsv").write_text(text)
