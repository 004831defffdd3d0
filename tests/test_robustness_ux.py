"""What a new user stumbled on: a progress bar that moved only every log_every steps and was silent
during the final evaluation, a closing line with only the last evaluation, no warning when no
update can happen, a blank one-point learning curve, configs missing from a non-editable install,
and a silent `make setup`."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlkit.runfiles.checkpoint import load_checkpoint
from rlkit.cli import _print_summary, main
from rlkit.config import build_run_config
from rlkit.runfiles.logger import learning_curve_figure
from rlkit.training.loops import train_online
from rlkit.runfiles.runs import LATEST

REPO = Path(__file__).resolve().parent.parent


class _RecordingBar:
    """Stands in for tqdm: records every position and postfix the run shows."""

    instances: list["_RecordingBar"] = []

    def __init__(self, total=None, initial=0, **kwargs):
        self.total, self.n = total, initial
        self.positions: list[int] = []
        self.postfixes: list[dict] = []
        _RecordingBar.instances.append(self)

    def update(self, delta):
        self.n += delta
        self.positions.append(self.n)

    def set_postfix(self, postfix, refresh=True):
        self.postfixes.append(dict(postfix))

    def write(self, text):
        pass

    def close(self):
        pass


def test_progress_bar_moves_every_step_and_shows_the_final_evaluation(tmp_path, cartpole_data, monkeypatch):
    import tqdm

    monkeypatch.setattr(tqdm, "tqdm", _RecordingBar)
    _RecordingBar.instances.clear()
    cfg = build_run_config(cartpole_data, ["train.total_steps=300", "log.log_every=100000", "log.progress=true",
                                           "train.eval_every=0", "train.eval_episodes=3"])
    train_online(cfg, tmp_path / "r")
    (bar,) = _RecordingBar.instances
    assert bar.n >= 300
    assert len(set(bar.positions)) >= 100  # every collect step (2 envs: ~150), not every log_every
    evaluating = [p["evaluating"] for p in bar.postfixes if "evaluating" in p]
    assert evaluating[0] == "0/3 episodes" and evaluating[-1] == "3/3 episodes" and len(evaluating) == 4
    assert "evaluating" not in bar.postfixes[-1] and "eval" in bar.postfixes[-1]


def test_closing_line_reports_last_and_best(capsys):
    _print_summary({"steps": 50_000, "wall_time": 10.0, "run_dir": "runs/x", "best_eval": 500.0, "best_step": 45_000,
                    "final_eval": {"return_mean": 304.0, "return_std": 12.5}})
    line = capsys.readouterr().out.splitlines()[0]
    assert "eval return 304.0 ± 12.5 (last), best 500.0 at step 45000" in line


def test_closing_line_of_a_real_run(capsys, tmp_path, cartpole_data):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cartpole_data))
    assert main(["train", str(config), f"--run-dir={tmp_path / 'r'}", "train.total_steps=600"]) == 0
    out = capsys.readouterr().out
    assert "(last), best" in out and "at step" in out


def test_warns_when_no_update_can_happen(capsys, tmp_path, cartpole_data):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cartpole_data))
    run = tmp_path / "r"
    assert main(["train", str(config), f"--run-dir={run}", "train.total_steps=150", "train.learning_starts=200"]) == 0
    out = capsys.readouterr().out
    assert "warning: train.total_steps (150) <= the step updates start at (200" in out
    assert "no update will happen" in out
    assert load_checkpoint(run / LATEST)["agent"]["updates"] == 0
    run = tmp_path / "r2"
    assert main(["train", str(config), f"--run-dir={run}", "train.total_steps=200", "train.learning_starts=200"]) == 0
    out = capsys.readouterr().out
    assert "warning: train.total_steps (200) <=" in out and "only the updates of that last step (1)" in out
    assert load_checkpoint(run / LATEST)["agent"]["updates"] == 1
    assert main(["train", str(config), f"--run-dir={tmp_path / 'r3'}", "train.total_steps=300",
                 "train.learning_starts=200"]) == 0
    assert "warning" not in capsys.readouterr().out


def test_learning_curve_with_one_evaluation_has_markers(tmp_path, cartpole_data):
    runs = []
    for seed in (0, 1):
        cfg = build_run_config(cartpole_data, ["train.total_steps=100", "train.eval_every=0", f"seed={seed}"])
        train_online(cfg, tmp_path / f"r{seed}")
        runs.append(tmp_path / f"r{seed}")
    fig = learning_curve_figure(runs[:1])
    for ax in fig.axes:
        (line,) = ax.get_lines()
        assert len(line.get_xdata()) == 1 and line.get_marker() == "o"
    fig = learning_curve_figure(runs, labels=["same", "same"])  # two seeds, one point each: still a dot
    for ax in fig.axes:
        (line,) = ax.get_lines()
        assert len(line.get_xdata()) == 1 and line.get_marker() == "o"


def test_non_editable_install_ships_the_configs(tmp_path):
    """`pip install .` (not -e): configs_dir() resolves to the installed copy and the default config loads."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("rlkit", "envs", "agents", "bench", "configs", "pretrained"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps",
                    "--no-build-isolation", "--no-index", "-q", "--target", str(site), str(src)],
                   check=True, capture_output=True, text=True)
    shutil.rmtree(src)  # nothing may point back at the source tree
    probe = ("import rlkit, rlkit.config as c; print(rlkit.__file__); print(c.configs_dir()); "
             "print(c.load_config(None).env.id)")
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    module, configs, env_id = proc.stdout.split()
    assert module.startswith(str(site)) and configs == str(site / "rlkit" / "configs")
    assert (site / "rlkit" / "configs" / "dqn_cartpole.yaml").is_file() and env_id == "CartPole-v1"
    # every package of the source tree is installed (a subpackage missing from setup.cfg's `packages` is not)
    for init in (REPO / "rlkit").rglob("__init__.py"):
        assert (site / init.relative_to(REPO)).is_file(), f"{init.parent.relative_to(REPO)} is not installed"
    # shipped policies (pretrained/: the humanoid's, the reference datasets') are package data too
    assert (site / "rlkit" / "pretrained" / "mpo_humanoid_walk" / "model.safetensors").is_file()
    shipped = sorted(p.name for p in (REPO / "configs").glob("*.yaml"))
    assert sorted(p.name for p in (site / "rlkit" / "configs").glob("*.yaml")) == shipped
    listed = subprocess.run([sys.executable, "-m", "rlkit.cli", "list"], cwd=tmp_path, env=env, capture_output=True,
                            text=True)
    assert listed.returncode == 0 and f"in {site / 'rlkit' / 'configs'}" in listed.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_setup_says_what_it_installs():
    out = subprocess.run(["make", "-n", "-B", "setup"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    echoes = [line for line in out.splitlines() if line.lstrip().startswith("echo")]
    assert any("creating the virtual environment" in e for e in echoes)
    assert any("installing rlkit" in e for e in echoes)
    assert "installing the CPU build" in out
