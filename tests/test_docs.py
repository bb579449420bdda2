"""The guides are executable: every ```sh runnable block runs against a real agent.

Each guide with runnable blocks gets its own emulated tenant (``emu``), a real
``entragate run`` process configured by a file, and a scratch root. The blocks run
in order, in one working directory, with ``bash -euo pipefail``; the paths the guides
use for a real install (``/etc/entragate/``, ``/var/lib/entragate/``) are mapped into
the scratch root, and ``$ENTRAGATE_URL`` / ``$ENTRAGATE_TOKEN`` name the running agent,
as the guides tell an operator to set them. Relative links between the pages are
checked too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from entragate.emulator import AppRegistration, Emulator
from tests.helpers.process import TOKEN, healthy, start, write_config
from tests.helpers.servers import free_port
from tests.helpers.sync import wait_for

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.glob("*.md")])
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
MAPPED_PREFIXES = ("/etc/entragate/", "/var/lib/entragate/")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    info: str
    text: str

    @property
    def runnable(self) -> bool:
        words = self.info.split()
        return len(words) >= 2 and words[0] in ("sh", "bash", "console") and "runnable" in words[1:]

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    return [
        Block(page, text.count("\n", 0, m.start()) + 1, m.group(1).strip(), m.group(2))
        for m in FENCE.finditer(text)
    ]


def runnable_pages() -> list[Path]:
    return [p for p in PAGES if any(b.runnable for b in blocks(p))]


@dataclass
class Sandbox:
    root: Path
    cwd: Path
    env: dict[str, str]

    def mapped(self, script: str) -> str:
        for prefix in MAPPED_PREFIXES:
            script = script.replace(prefix, f"{self.root}{prefix}")
        return script

    def run(self, block: Block) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", self.mapped(block.text)],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=90,
        )


@pytest.fixture
def sandbox(emu: Emulator, app: AppRegistration, tmp_path: Path) -> Iterator[Sandbox]:
    """An agent process on a real SQLite store, configured where a real install keeps it."""
    etc = tmp_path / "etc" / "entragate"
    state = tmp_path / "var" / "lib" / "entragate"
    cwd = tmp_path / "work"
    for directory in (etc, state, cwd):
        directory.mkdir(parents=True)
    port = free_port()
    config = write_config(emu, app, etc, port, store=f"sqlite:///{state / 'grants.db'}", rate=20)
    config = config.rename(etc / "config.toml")
    (etc / "api-token").write_text(TOKEN + "\n")
    (etc / "api-token").chmod(0o600)
    log = tmp_path / "agent.log"
    agent = start(config, log)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: healthy(url), 30), log.read_text()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("ENTRAGATE_") and key not in ("KNOCKNOC_USER",)
        }
        env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            ENTRAGATE_CONFIG=str(config),
            ENTRAGATE_URL=url,
            ENTRAGATE_TOKEN=TOKEN,
            HOME=str(tmp_path),
        )
        yield Sandbox(tmp_path, cwd, env)
    finally:
        agent.terminate()
        agent.wait(15)


@pytest.mark.parametrize("page", runnable_pages(), ids=lambda p: p.name)
def test_runnable_blocks_of_a_guide_succeed_against_a_real_agent(
    page: Path, sandbox: Sandbox
) -> None:
    for block in (b for b in blocks(page) if b.runnable):
        result = sandbox.run(block)
        assert result.returncode == 0, (
            f"{block} exited {result.returncode}\n--- script\n{block.text}"
            f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
        )


def test_the_guides_have_runnable_blocks() -> None:
    names = {p.name for p in runnable_pages()}
    assert {"operations.md", "tenant-setup.md", "emulator.md"} <= names, names


def test_runnable_blocks_need_nothing_that_cannot_run_here() -> None:
    for page in PAGES:
        for block in blocks(page):
            if block.runnable:
                for word in ("az ", "systemctl ", "sudo ", "apt-get "):
                    assert word not in block.text, f"{block} uses {word.strip()}"


LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def test_relative_links_between_pages_resolve() -> None:
    for page in PAGES:
        for target, _anchor in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to {target}"


def test_the_guides_are_linked_from_the_readme_and_the_docs_index() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for guide in ("tenant-setup.md", "conditional-access.md", "operations.md"):
        assert f"docs/{guide}" in readme, guide
        assert f"({guide})" in index, guide
