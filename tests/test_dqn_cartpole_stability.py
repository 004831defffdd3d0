"""The shipped default (configs/dqn_cartpole.yaml, what `make train` runs) solves CartPole-v1 and stays solved.

Slow (about 3 minutes per seed on 2 shared cores): run with `pytest -m slow tests/test_dqn_cartpole_stability.py`.
The criteria of docs/benchmarks.md ("DQN CartPole: stability"), on seeds 0, 1, 2 at the shipped settings:
first evaluation mean >= 475 within the 50,000-step budget, a final evaluation >= 475, and >= 90% of the
evaluations from the first solve on at >= 475.
"""

import pytest

from rlkit.bench import SOLVED, Outcome
from rlkit.config import configs_dir, load_config
from rlkit.runfiles.logger import read_metrics
from rlkit.training.loops import train_online


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shipped_cartpole_config_solves_and_stays_solved(tmp_path, seed):
    cfg = load_config(str(configs_dir() / "dqn_cartpole.yaml"),
                      [f"seed={seed}", "torch_threads=1", "device=cpu", "log.progress=false", "log.tensorboard=false",
                       "log.plot=false", "train.save_buffer=false", "train.checkpoint_every=0"])
    assert cfg.train.total_steps == 50_000 and cfg.train.eval_every == 2_500 and cfg.train.stop_at_solve is None
    train_online(cfg, tmp_path)
    run = Outcome([(r["step"], r["time"], r["return_mean"]) for r in read_metrics(tmp_path) if r["kind"] == "eval"])
    evals = [round(mean) for *_, mean in run.evals]
    step, _ = run.first_solve
    assert step is not None and step <= 50_000, f"never solved: {evals}"
    assert run.final >= SOLVED, f"final evaluation {run.final} < {SOLVED}: {evals}"
    assert run.held >= 90.0, f"only {run.held:.0f}% of the evaluations from step {step} on are >= {SOLVED}: {evals}"
