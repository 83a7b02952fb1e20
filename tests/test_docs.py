"""The commands in README.md and docs/ work: every ``autoseg`` line parses, runnable blocks run.

A fenced ``bash`` block preceded by the line ``<!-- runnable -->`` is executed with ``bash -e`` in a
temporary folder, with ``AUTOSEG_RAW``, ``AUTOSEG_PREPROCESSED`` and ``AUTOSEG_RESULTS`` pointing
into it and this environment's ``autoseg`` first on PATH. Every other ``autoseg ...`` line of a
``bash`` block is parsed by the real argument parser, so a renamed subcommand or option fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from autoseg.commands.dispatch import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = "<!-- runnable -->"


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    text: str
    runnable: bool


def shell_blocks(page: Path) -> list[Block]:
    """The fenced bash/sh blocks of ``page``, each with whether the line before it marks it runnable."""
    lines = page.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if re.fullmatch(r"```(bash|sh|shell)\s*", lines[i]):
            start = i
            i += 1
            body = []
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            runnable = start > 0 and lines[start - 1].strip() == RUNNABLE
            blocks.append(Block(page, start + 1, "\n".join(body), runnable))
        i += 1
    return blocks


def autoseg_commands(block: Block) -> list[tuple[int, list[str]]]:
    """``(line, argv)`` of every ``autoseg ...`` command in a block (continuations and comments handled)."""
    joined = re.sub(r"\\\n\s*", " ", block.text)
    found = []
    for k, raw in enumerate(joined.splitlines()):
        words = shlex.split(raw, comments=True)
        # `autoseg ...`, `$run autoseg ...` (a Docker prefix) and `torchrun ... -m autoseg ...`
        at = [i for i, w in enumerate(words) if w == "autoseg" and (i == 0 or words[i - 1][:1] == "$")]
        at += [i for i, w in enumerate(words) if w == "autoseg" and i > 0 and words[i - 1] == "-m"]
        if at:
            found.append((block.line + k + 1, words[at[0] + 1 :]))
    return found


ALL_BLOCKS = [b for page in PAGES for b in shell_blocks(page)]
COMMANDS = [(b.page.name, line, argv) for b in ALL_BLOCKS for line, argv in autoseg_commands(b)]


def test_the_pages_have_commands_and_a_runnable_block() -> None:
    assert len(COMMANDS) > 40
    assert any(b.runnable for b in ALL_BLOCKS if b.page.name == "README.md")


@pytest.mark.parametrize(("page", "line", "argv"), COMMANDS, ids=[f"{p}:{n}" for p, n, _ in COMMANDS])
def test_every_documented_command_parses(page: str, line: int, argv: list[str]) -> None:
    parser = build_parser()
    try:
        _, extra = parser.parse_known_args(argv)
    except SystemExit as err:  # argparse exits on an unknown subcommand or a missing argument
        pytest.fail(f"{page}:{line}: `autoseg {' '.join(argv)}` does not parse (exit {err.code})")
    unknown = [e for e in extra if e.startswith("-") or "=" not in e]
    assert unknown == [], f"{page}:{line}: unknown arguments {unknown}"


def test_the_parse_check_catches_a_wrong_option() -> None:
    """A test of the test: a misspelt option is reported."""
    block = Block(Path("x.md"), 1, "autoseg predict -i a -o b -m c --no-ttaa", False)
    ((_, argv),) = autoseg_commands(block)
    _, extra = build_parser().parse_known_args(argv)
    assert extra == ["--no-ttaa"]


RUNNABLE_BLOCKS = [b for b in ALL_BLOCKS if b.runnable]


@pytest.mark.parametrize("block", RUNNABLE_BLOCKS, ids=[f"{b.page.name}:{b.line}" for b in RUNNABLE_BLOCKS])
def test_runnable_block_runs(block: Block, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AUTOSEG_RAW": str(tmp_path / "raw"),
        "AUTOSEG_PREPROCESSED": str(tmp_path / "preprocessed"),
        "AUTOSEG_RESULTS": str(tmp_path / "results"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        ["bash", "-e", "-c", block.text],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    where = f"{block.page.name}:{block.line}"
    assert done.returncode == 0, f"{where} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
