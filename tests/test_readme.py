"""The README's Python examples run as written: every ```python block, in order, in one namespace (as a
reader pasting them into one session would), in a fresh working directory. Other blocks (bash) are not run."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, code) of every ```python block."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_blocks_are_found():
    blocks = python_blocks("text\n```python\nx = 1\n```\n```bash\nrlkit list\n```\n```python\ny = x\n```\n")
    assert [code for _, code in blocks] == ["x = 1\n", "y = x\n"]
    assert [line for line, _ in blocks] == [3, 9]


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 2, "the README's Python API section has a training and a loading example"
    monkeypatch.chdir(tmp_path)  # runs/ is written here, not into the repository
    namespace: dict = {"__name__": "__readme__"}
    for line, code in blocks:
        try:
            exec(compile(code, f"README.md:{line}", "exec"), namespace)
        except Exception as exc:  # name the block in the failure
            pytest.fail(f"README.md python block at line {line} raised {type(exc).__name__}: {exc}")
    assert list((tmp_path / "runs").iterdir()), "the training example wrote its run under runs/"
