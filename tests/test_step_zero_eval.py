"""The evaluation at step 0 (issue 18, finding 28): a new run evaluates its untrained policy before any update,
online (``train.eval_every > 0``) and offline (a run with an env), so learning curves start at step 0.

It adds one ``eval`` record and changes nothing else: the run trains exactly as without it, even when the
evaluation draws from the agent's own generator (``train.eval_epsilon`` > 0); a resume adds no second one;
``best.pt`` and ``summary["best_step"]`` may name step 0; a run already solved at step 0 stops there.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch

import rlkit
from rlkit.cli import main
from rlkit.training import loops

QUIET = ["log.progress=false", "log.tensorboard=false", "log.plot=false", "device=cpu", "torch_threads=1"]
# a small DQN CartPole whose evaluations draw random actions from the agent's generator (eval_epsilon)
SMALL_DQN = ["train.total_steps=800", "train.learning_starts=200", "train.train_every=50", "train.gradient_steps=4",
             "train.batch_size=32", "agent.hidden=[32]", "train.eval_every=400", "train.eval_episodes=2",
             "train.eval_epsilon=0.5", "train.checkpoint_every=400", "log.log_every=200", *QUIET]
WALL_CLOCK = ("time", "sps")


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _without_wall_clock(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in records]


def _is_step_0_eval(record: dict) -> bool:
    return record["kind"] == "eval" and record["step"] == 0


def _best_is_the_first_highest(run: rlkit.Run) -> None:
    evals = run.metrics("eval")
    best = max(r["return_mean"] for r in evals)
    assert run.summary["best_eval"] == best
    assert run.summary["best_step"] == next(r["step"] for r in evals if r["return_mean"] == best)
    assert torch.load(run.run_dir / "checkpoints" / "best.pt", weights_only=False)["step"] == run.summary["best_step"]


def test_online_run_evaluates_at_step_0_and_trains_exactly_as_without_it(tmp_path, monkeypatch):
    run = rlkit.train("dqn_cartpole", run_dir=tmp_path / "with", overrides=SMALL_DQN)
    records = _records(run.run_dir)
    assert _is_step_0_eval(records[0])  # before any episode or update
    assert [r["step"] for r in records if r["kind"] == "eval"] == [0, 400, 800]
    _best_is_the_first_highest(run)

    # the same run without the step-0 evaluation: every other record the same
    with monkeypatch.context() as m:
        m.setattr(loops._Run, "evaluate_untrained", lambda self, agent, envs: None)
        rlkit.train("dqn_cartpole", run_dir=tmp_path / "without", overrides=SMALL_DQN)
    without = _without_wall_clock(_records(tmp_path / "without"))
    assert _without_wall_clock([r for r in records if not _is_step_0_eval(r)]) == without

    # the test has teeth: with its random draws left in the agent's generator, training changes
    with monkeypatch.context() as m:
        m.setattr(loops, "_generators_kept", lambda agent: contextlib.nullcontext())
        rlkit.train("dqn_cartpole", run_dir=tmp_path / "unguarded", overrides=SMALL_DQN)
    unguarded = _without_wall_clock([r for r in _records(tmp_path / "unguarded") if not _is_step_0_eval(r)])
    assert unguarded != without


def test_no_step_0_evaluation_without_periodic_evaluation(tmp_path):
    run = rlkit.train("dqn_cartpole", run_dir=tmp_path / "run", overrides=[*SMALL_DQN, "train.eval_every=0"])
    assert [r["step"] for r in run.metrics("eval")] == [800]  # only the final one, as before


def test_resume_adds_no_second_step_0_evaluation(tmp_path):
    first = [o for o in SMALL_DQN if not o.startswith("train.total_steps")] + ["train.total_steps=400"]
    rlkit.train("dqn_cartpole", run_dir=tmp_path / "run", overrides=first)
    run = rlkit.train(run_dir=tmp_path / "run", resume=True, overrides=["train.total_steps=800"])
    assert [r["step"] for r in run.metrics("eval")] == [0, 400, 800]
    _best_is_the_first_highest(run)


def test_the_learning_curve_starts_at_step_0(tmp_path):
    from rlkit.runfiles.logger import learning_curve_figure

    run = rlkit.train("dqn_cartpole", run_dir=tmp_path / "run", overrides=SMALL_DQN)
    fig = learning_curve_figure([run.run_dir])
    steps_panel = fig.axes[0]
    assert list(steps_panel.get_lines()[0].get_xdata()) == [0, 400, 800]
    assert main(["plot", str(run.run_dir), "--out", str(tmp_path / "curve.png")]) == 0
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_a_run_solved_at_step_0_stops_there(tmp_path, capsys):
    """``train.stop_at_solve`` already met by the untrained policy: the run stops at step 0 with its checkpoint,
    and ``best.pt`` is that policy (CartPole's returns are >= 1)."""
    run = rlkit.train("dqn_cartpole", run_dir=tmp_path / "run", overrides=[*SMALL_DQN, "train.stop_at_solve=1"])
    assert run.summary["steps"] == 0 and run.summary["solved"] is True and run.summary["best_step"] == 0
    assert [r["kind"] for r in _records(run.run_dir)] == ["eval"]
    assert run.summary["final_eval"]["return_mean"] == run.summary["best_eval"] >= 1
    assert (run.run_dir / "checkpoints" / "latest.pt").exists()
    _best_is_the_first_highest(run)
    assert main(["eval", str(run.run_dir), "--episodes", "1"]) == 0


# ------------------------------------------------------------------ offline


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    assert main(["collect", "random", "--env", "Pendulum-v1", "--episodes", "2", "--out",
                 "rlkit/pendulum-random-v0", "--num-envs", "2"]) == 0
    return {"seed": 0, "env": {"id": "Pendulum-v1"}, "offline": {"dataset": "rlkit/pendulum-random-v0"},
            "agent": {"name": "bc", "hidden": [16]},
            "train": {"total_steps": 100, "batch_size": 16, "eval_every": 50, "eval_episodes": 2,
                      "checkpoint_every": 50},
            "log": {"progress": False, "tensorboard": False, "plot": False, "log_every": 50}}


def test_offline_run_evaluates_at_step_0_and_resume_adds_none(dataset, tmp_path):
    run = rlkit.train(dataset, run_dir=tmp_path / "run")
    records = _records(run.run_dir)
    assert _is_step_0_eval(records[0])
    assert [r["step"] for r in records if r["kind"] == "eval"] == [0, 50, 100]
    _best_is_the_first_highest(run)
    run = rlkit.train(run_dir=tmp_path / "run", resume=True, overrides=["train.total_steps=150"])
    assert [r["step"] for r in run.metrics("eval")] == [0, 50, 100, 150]


def test_offline_run_trains_exactly_as_without_the_step_0_evaluation(dataset, tmp_path, monkeypatch):
    run = rlkit.train(dataset, run_dir=tmp_path / "with")
    with monkeypatch.context() as m:
        m.setattr(loops._Run, "evaluate_untrained", lambda self, agent, envs: None)
        rlkit.train(dataset, run_dir=tmp_path / "without")
    assert (_without_wall_clock([r for r in _records(run.run_dir) if not _is_step_0_eval(r)])
            == _without_wall_clock(_records(tmp_path / "without")))


def test_offline_run_without_an_env_has_no_step_0_evaluation(dataset, tmp_path):
    run = rlkit.train({**dataset, "env": {"id": None}}, run_dir=tmp_path / "run")
    assert run.metrics("eval") == []


def test_offline_run_solved_at_step_0_stops_there(dataset, tmp_path):
    dataset["train"]["stop_at_solve"] = -1e9  # Pendulum's returns are > -1e9
    run = rlkit.train(dataset, run_dir=tmp_path / "run")
    assert run.summary["steps"] == 0 and run.summary["solved"] is True and run.summary["best_step"] == 0
    assert [r["kind"] for r in _records(run.run_dir)] == ["eval"]
    assert (run.run_dir / "checkpoints" / "latest.pt").exists()
