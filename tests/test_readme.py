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
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))  # the dataset example writes here
    namespace: dict = {"__name__": "__readme__"}
    for line, code in blocks:
        try:
            exec(compile(code, f"README.md:{line}", "exec"), namespace)
        except Exception as exc:  # name the block in the failure
            pytest.fail(f"README.md python block at line {line} raised {type(exc).__name__}: {exc}")
    assert list((tmp_path / "runs").iterdir()), "the training example wrote its run under runs/"


# --------------------------------------------------------------------------------------
# The README's shell commands (issue 18 #24): each does what its text says
# --------------------------------------------------------------------------------------

import os  # noqa: E402
import shlex  # noqa: E402

REPO = README.parent
BASH = re.compile(r"^```bash[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
MAKE_TRAIN = re.compile(r'make train(?: ARGS="([^"]*)")?')
PLACEHOLDER = re.compile(r"(^|\s)\[|[|<]|\b[A-Z][A-Z_]+\b")  # a synopsis line: [OPTION], RUN_DIR, a|b, <run>


def readme_commands(text: str) -> list[list[str]]:
    """The ``rlkit`` argv of every runnable command in the README, in order: the lines of ```bash blocks that
    start with ``rlkit`` (comments dropped; synopsis lines with placeholders skipped) and ``make train`` with
    its ``ARGS`` (``rlkit train ARGS``)."""
    commands = []
    for block in BASH.finditer(text):
        for line in block.group(1).splitlines():
            code = line.split(" #", 1)[0].strip()
            make = MAKE_TRAIN.fullmatch(code)
            if make:
                commands.append(["train", *shlex.split(make.group(1) or "")])
            elif code.startswith("rlkit ") and not PLACEHOLDER.search(code):
                commands.append(shlex.split(code)[1:])
    for make in MAKE_TRAIN.finditer(text.split("```", 1)[0] + "".join(text.split("```")[2::2])):  # prose
        if make.group(1):
            commands.append(["train", *shlex.split(make.group(1))])
    return commands


def test_readme_commands_are_found():
    text = ('`make train ARGS="mine/x.yaml --seed 1"` prose\n```bash\nmake train   # c\nrlkit list\n'
            'rlkit eval RUN_DIR [--episodes 10]\nrlkit train mine/y.yaml a.b=[1,2]   # note\n```\n')
    assert readme_commands(text) == [["train"], ["list"], ["train", "mine/y.yaml", "a.b=[1,2]"],
                                     ["train", "mine/x.yaml", "--seed", "1"]]


def _train_config(args: list[str]):
    from rlkit.cli import _split_config_and_overrides, build_parser
    from rlkit.config import load_config

    ns, extra = build_parser().parse_known_args(["train", *args])
    path, overrides = _split_config_and_overrides(list(ns.args) + extra)
    path = path if path is None or Path(path).is_absolute() else REPO / path
    return load_config(path, overrides + ([f"seed={ns.seed}"] if ns.seed is not None else []))


def test_readme_train_commands_train_something():
    """Every `rlkit train` the README shows updates its agent within its own budget (the Pong example once
    stopped at 20k env steps, before learning starts at 80k) and every suite and directory it names exists."""
    from rlkit.bench.registry import SUITES

    commands = readme_commands(README.read_text())
    assert len([c for c in commands if c[0] == "train"]) >= 6
    for args in commands:
        shown = "rlkit " + " ".join(args)
        if args[0] == "train" and "--resume" not in args:
            cfg = _train_config(args[1:])
            assert cfg.offline is not None or cfg.train.learning_starts < cfg.train.total_steps, \
                f"README: `{shown}` trains nothing: train.total_steps {cfg.train.total_steps} <= " \
                f"train.learning_starts {cfg.train.learning_starts}"
        elif args[0] == "bench":
            assert args[1] in SUITES, shown
        elif args[0] == "eval" and args[1].startswith("pretrained/"):
            assert (REPO / args[1]).is_dir(), shown


SCALED_STEPS = 400


def _scaled(args: list[str]) -> list[str]:
    """A README command with its budget scaled down: train runs to SCALED_STEPS steps (learning_starts scaled by
    the same factor), one evaluation episode at the end, no TensorBoard or plots; collect and eval to a few
    episodes. Paths into the repository (configs/, pretrained/) made absolute."""
    args = [str(REPO / a) if (REPO / a).exists() and not Path(a).is_absolute() and "/" in a else a for a in args]
    if args[0] == "train":
        cfg = _train_config(args[1:])
        steps = min(cfg.train.total_steps, SCALED_STEPS)
        starts = cfg.train.learning_starts * steps // cfg.train.total_steps
        return [*args, f"train.total_steps={steps}", f"train.learning_starts={starts}", "train.eval_every=0",
                "train.eval_episodes=1", "train.checkpoint_every=0", "log.progress=false", "log.tensorboard=false",
                "log.plot=false", "device=cpu"]
    if args[:2] == ["dataset", "make-reference"] and "--list" not in args:
        args = [*args, "--steps", "1000"]  # a reference dataset's 200k steps, scaled down
    for flag, few in (("--episodes", 2), ("--games", 4)):
        if flag in args:
            i = args.index(flag) + 1
            args[i] = str(min(int(args[i]), few))
    return args


@pytest.mark.slow
def test_readme_commands_run(tmp_path, monkeypatch, capsys):
    """Every runnable command of the README, in order in one directory (as a reader would type them), short
    ones as written and long ones scaled down (:func:`_scaled`); benchmarks are left to `rlkit bench`'s tests."""
    from rlkit.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    for args in readme_commands(README.read_text()):
        if args[0] == "bench":
            continue
        code = main(_scaled(args))
        out, err = capsys.readouterr()
        assert code == 0, f"README: `rlkit {' '.join(args)}` exited {code}: {err.strip()[-400:]}"
