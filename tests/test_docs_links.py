"""Every repo path that a docstring, comment, config or doc points to exists (no dangling references)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATTERN = re.compile(r"(?<![\w/.-])((?:docs|configs|scripts|envs|agents|rlkit|tests)/[\w./-]+\.(?:md|yaml|py|png|xml))")


def test_referenced_repo_files_exist():
    missing = []
    for folder in ("rlkit", "envs", "agents", "configs", "scripts", "docs", "tests"):
        for path in (ROOT / folder).rglob("*"):
            # design.md cites other codebases' files (CleanRL, Acme, ...) by their own paths
            if path.suffix not in (".py", ".yaml", ".md") or path == Path(__file__) or path.name == "design.md":
                continue
            for ref in PATTERN.findall(path.read_text(encoding="utf-8")):
                if not (ROOT / ref.rstrip(".")).exists():
                    missing.append(f"{path.relative_to(ROOT)} -> {ref}")
    for ref in PATTERN.findall((ROOT / "README.md").read_text(encoding="utf-8")):
        if not (ROOT / ref.rstrip(".")).exists():
            missing.append(f"README.md -> {ref}")
    assert not missing, "\n".join(missing)
