"""rlkit.runfiles.rendering and rlkit.mujoco_gl: MuJoCo's offscreen backend chosen before MuJoCo is imported, SDL
kept quiet, and `rlkit eval --video` failing in one line, before any episode, when no frame can be rendered."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlkit import mujoco_gl
from rlkit.cli import main
from rlkit.mujoco_gl import choose_mujoco_gl
from rlkit.runfiles import rendering
from rlkit.runfiles.rendering import RenderingError, quiet_sdl

HEADLESS_UNSET = ("DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR", "MUJOCO_GL", "SDL_VIDEODRIVER", "SDL_AUDIODRIVER")


def headless_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in HEADLESS_UNSET}
    return {**env, **extra}


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlkit.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


# ------------------------------------------------------------------- units


def test_quiet_sdl_only_without_a_display():
    environ: dict[str, str] = {}
    quiet_sdl(environ)
    assert environ == {"SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    environ = {"SDL_VIDEODRIVER": "x11"}
    quiet_sdl(environ)
    assert environ["SDL_VIDEODRIVER"] == "x11"  # the user's choice stays
    environ = {"DISPLAY": ":0"}
    quiet_sdl(environ)
    assert environ == {"DISPLAY": ":0"}


@pytest.fixture
def probes(monkeypatch):
    """choose_mujoco_gl as if MuJoCo were not imported yet, with scripted probe results."""
    monkeypatch.delitem(sys.modules, "mujoco", raising=False)
    results: dict[str, str | None] = {}
    calls: list[str] = []

    def probe(backend, timeout=60.0):
        calls.append(backend)
        return results.get(backend, "no such backend here")

    monkeypatch.setattr(mujoco_gl, "probe_mujoco_gl", probe)
    return results, calls


def test_choose_mujoco_gl_headless_tries_egl_then_osmesa(probes):
    results, calls = probes
    results.update(egl=None)
    environ: dict[str, str] = {}
    assert choose_mujoco_gl(environ) == ("egl", {})
    assert environ["MUJOCO_GL"] == "egl" and calls == ["egl"]

    calls.clear()
    results.update(egl="EGL not found", osmesa=None)
    environ = {}
    assert choose_mujoco_gl(environ) == ("osmesa", {"egl": "EGL not found"})
    assert environ["MUJOCO_GL"] == "osmesa" and calls == ["egl", "osmesa"]


def test_choose_mujoco_gl_with_display_tries_glfw_first(probes):
    results, calls = probes
    results.update(glfw=None)
    environ = {"DISPLAY": ":0"}
    assert choose_mujoco_gl(environ) == ("glfw", {})
    assert calls == ["glfw"]


def test_choose_mujoco_gl_keeps_the_users_choice(probes):
    _, calls = probes
    environ = {"MUJOCO_GL": "osmesa"}
    assert choose_mujoco_gl(environ) == ("osmesa", {})
    assert calls == [] and environ == {"MUJOCO_GL": "osmesa"}


def test_choose_mujoco_gl_when_none_works(probes):
    environ: dict[str, str] = {}
    backend, failures = choose_mujoco_gl(environ)
    assert backend is None and "MUJOCO_GL" not in environ
    assert set(failures) == {"egl", "osmesa"}
    message = rendering._failure_message("rlkit/HumanoidImitation-v0", "no GL context", failures, mujoco=True)
    assert "\n" not in message
    assert "MUJOCO_GL=egl: no such backend here" in message and "MUJOCO_GL=osmesa" in message
    assert "install EGL" in message


def test_probe_reports_a_broken_backend_in_one_line():
    reason = mujoco_gl.probe_mujoco_gl("bogus")
    assert reason is not None and "\n" not in reason and "bogus" in reason


@pytest.fixture
def own_environ(monkeypatch):
    """prepare_video sets SDL's drivers in os.environ: restore them after the test."""
    for key in ("SDL_VIDEODRIVER", "SDL_AUDIODRIVER"):
        monkeypatch.setenv(key, os.environ.get(key, "dummy"))


def test_prepare_video_renders_a_first_frame_of_classic_control(own_environ):
    rendering.prepare_video("CartPole-v1", {}, seed=0)


def test_prepare_video_names_bad_ids_in_one_line(own_environ):
    with pytest.raises(RenderingError, match="cannot record a video of rlkit/NoSuchEnv-v0"):
        rendering.prepare_video("rlkit/NoSuchEnv-v0")


# ------------------------------------------------------------------- `rlkit eval --video`, headless


def _train(tmp_path_factory, name: str, data: dict) -> Path:
    root = tmp_path_factory.mktemp(name)
    (root / "run.yaml").write_text(yaml.safe_dump(data))
    assert main(["train", str(root / "run.yaml"), f"--run-dir={root / 'run'}"]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def humanoid_run(tmp_path_factory):
    return _train(tmp_path_factory, "humanoid", {
        "env": {"id": "rlkit/HumanoidImitation-v0", "num_envs": 1,
                "kwargs": {"clips": ["walk"], "max_episode_steps": 10}},
        "agent": {"name": "mpo", "policy_hidden": [16], "critic_hidden": [16], "num_samples": 4},
        "train": {"total_steps": 60, "learning_starts": 30, "batch_size": 8, "replay": {"capacity": 200},
                  "eval_every": 0, "eval_episodes": 1, "checkpoint_every": 0},
        "log": {"progress": False, "log_every": 30, "tensorboard": False, "plot": False},
    })


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    return _train(tmp_path_factory, "cartpole", {
        "env": {"id": "CartPole-v1", "num_envs": 2},
        "agent": {"name": "dqn", "hidden": [16], "eps_decay_steps": 100},
        "train": {"total_steps": 120, "learning_starts": 40, "batch_size": 16, "replay": {"capacity": 500},
                  "eval_every": 0, "eval_episodes": 1, "checkpoint_every": 0},
        "log": {"progress": False, "log_every": 60, "tensorboard": False, "plot": False},
    })


def test_eval_video_with_a_broken_mujoco_gl_exits_2_in_one_line_before_any_episode(humanoid_run):
    result = run_cli("eval", str(humanoid_run), "--episodes", "1", "--video", env=headless_env(MUJOCO_GL="bogus"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    # an invalid value is refused for every command, before MuJoCo is imported (check_mujoco_gl)
    assert len(lines) == 1 and lines[0].startswith("rlkit: error: MUJOCO_GL='bogus' is not a MuJoCo OpenGL backend")
    assert "return" not in result.stdout  # no episode ran
    assert not (humanoid_run / "eval.json").exists() and not (humanoid_run / "videos").exists()


def test_eval_video_headless_chooses_an_offscreen_backend(humanoid_run):
    if all(mujoco_gl.probe_mujoco_gl(b) for b in mujoco_gl.OFFSCREEN_BACKENDS):
        pytest.skip("no offscreen OpenGL backend (EGL, OSMesa) on this machine")
    result = run_cli("eval", str(humanoid_run), "--episodes", "1", "--video", env=headless_env())
    assert result.returncode == 0, result.stderr
    assert "video:" in result.stdout and list((humanoid_run / "videos").glob("*.mp4"))


def test_eval_video_of_classic_control_prints_nothing_on_stderr(cartpole_run):
    """pygame's SDL probed Wayland, which printed 'error: XDG_RUNTIME_DIR is invalid or not set'."""
    result = run_cli("eval", str(cartpole_run), "--episodes", "1", "--video", env=headless_env())
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    assert list((cartpole_run / "videos").glob("*.mp4"))


def test_invalid_mujoco_gl_is_one_line_for_every_command(monkeypatch, capsys):
    """MuJoCo raises from inside `import mujoco` on an unknown MUJOCO_GL: rlkit says so in one line first."""
    from rlkit.cli import main
    from rlkit.mujoco_gl import check_mujoco_gl

    assert check_mujoco_gl({"MUJOCO_GL": "egl"}) is None and check_mujoco_gl({}) is None
    assert check_mujoco_gl({"MUJOCO_GL": " EGL "}) is None and check_mujoco_gl({"MUJOCO_GL": "disable"}) is None
    monkeypatch.setenv("MUJOCO_GL", "bogus")
    for argv in (["eval", "pretrained/mpo_humanoid_walk", "--episodes", "1"], ["list"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "MUJOCO_GL='bogus'" in err
