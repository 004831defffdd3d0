"""``rlkit bench dt`` (bench/suites/dt.py, bench/d3rlpy_dt_driver.py): rlkit's Decision Transformer raced against
d3rlpy's. Always tested: the update's FLOP formula (against torch's own FLOP counter on rlkit's model), the driver's
reading of a dataset (against rlkit's reader), the rates and the result table, and the one-line error when d3rlpy's
venv is missing. The quick profile end to end when d3rlpy's venv exists (RLKIT_D3RLPY_PYTHON)."""

import json
import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.bench import SMOKE, markdown_section
from rlkit.bench.d3rlpy_dt_driver import action_bounds, read_episodes, read_metadata
from rlkit.bench.suites import dt
from rlkit.cli import main

DEFAULT_VENV_PYTHON = Path("/work/venvs/d3rlpy/bin/python")  # where dt.MAKE_VENV puts it


def _d3rlpy_python() -> str | None:
    python = os.environ.get(dt.PYTHON_ENV) or (str(DEFAULT_VENV_PYTHON) if DEFAULT_VENV_PYTHON.is_file() else None)
    return python if python and Path(python).is_file() else None


def _clear_settings(monkeypatch) -> None:
    for key in list(os.environ):
        if key.startswith("RLKIT_BENCH_DT_"):
            monkeypatch.delenv(key)


# ------------------------------------------------------------------ FLOPs


def test_update_flops_formula_matches_torch_flop_counter():
    """3 x the forward's matmul FLOPs: torch's FlopCounterMode on rlkit's model (forward + backward, with and
    without padding) agrees with the formula within 0.1% (the formula also counts the input embeddings' input
    gradients, which autograd skips)."""
    from torch.utils.flop_counter import FlopCounterMode

    from rlkit.agents.decision_transformer import DecisionTransformerConfig, DecisionTransformerModel

    torch.manual_seed(0)
    B, K, o, a = 8, 20, 11, 3
    model = DecisionTransformerModel(DecisionTransformerConfig(), gym.spaces.Box(-np.inf, np.inf, (o,)), a, False)
    args = (torch.randn(B, K), torch.randn(B, K, o), torch.rand(B, K, a), torch.randint(0, 1000, (B, K)))
    valid = torch.ones(B, K, dtype=torch.bool)
    valid[:, :5] = False
    formula = dt.update_flops(B, K, 128, 3, o, a)
    pruned = dt.update_flops(B, K, 128, 3, o, a, state_queries_last=True)
    for mask in (None, valid):
        with FlopCounterMode(display=False) as counter:  # the textbook computation (every token, every block)
            model(*args, mask, all_tokens=True).square().mean().backward()
        assert counter.get_total_flops() == pytest.approx(formula, rel=1e-3)
        with FlopCounterMode(display=False) as counter:  # rlkit's: the last block on the state tokens only
            model(*args, mask).square().mean().backward()
        assert counter.get_total_flops() == pytest.approx(pruned, rel=1e-3)
    assert pruned / formula == pytest.approx(0.81, abs=0.01)


def test_update_flops_of_the_issue_settings():
    # h 128 (the race): 14.7 GFLOP per update of 64 windows; h 256 (d3rlpy's default width): the issue's ≈55
    assert dt.update_flops(64, 20, 128, 3, 11, 3) / 1e9 == pytest.approx(14.67, abs=0.01)
    assert dt.update_flops(64, 20, 256, 3, 11, 3) / 1e9 == pytest.approx(56.5, abs=0.1)


# ------------------------------------------------------------------ the driver's dataset


def _write(tmp_path, monkeypatch, episodes=12) -> Path:
    from rlkit.experience.datasets import Episode, load_dataset, write_dataset

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    rng = np.random.default_rng(0)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)
    act_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
    eps = []
    for i in range(episodes):
        T = 3 + i
        ends = np.zeros(T, bool)
        ends[-1] = True
        eps.append(Episode(rng.normal(size=(T + 1, 4)), rng.uniform(-2, 2, (T, 2)).astype(np.float32),
                           rng.normal(size=T), ends if i % 2 else np.zeros(T, bool),
                           np.zeros(T, bool) if i % 2 else ends))
    write_dataset("test/tiny-v0", eps, obs_space, act_space, env_id="Pendulum-v1")
    return load_dataset("test/tiny-v0").path


def test_driver_reads_the_dataset_as_rlkit_does(tmp_path, monkeypatch):
    """The d3rlpy side reads the Minari HDF5 itself (it cannot import rlkit): episodes in id order (episode_10
    after episode_9), observations without the final one, float32, each episode's end flagged."""
    from rlkit.experience.datasets import load_dataset

    path = _write(tmp_path, monkeypatch)
    data = load_dataset(str(path))
    arrays = read_episodes(path / "data")
    episodes = data.episodes
    assert len(arrays["rewards"]) == sum(len(e) for e in episodes)
    np.testing.assert_allclose(arrays["observations"],
                               np.concatenate([e.observations[:-1] for e in episodes]).astype(np.float32))
    np.testing.assert_allclose(arrays["actions"], np.concatenate([e.actions for e in episodes]))
    np.testing.assert_allclose(arrays["rewards"], np.concatenate([e.rewards for e in episodes]).astype(np.float32))
    np.testing.assert_array_equal(arrays["terminals"], np.concatenate([e.terminations for e in episodes]))
    np.testing.assert_array_equal(arrays["timeouts"], np.concatenate([e.truncations for e in episodes]))
    assert all(a.dtype == np.float32 for a in arrays.values())
    ends = np.flatnonzero(arrays["terminals"] + arrays["timeouts"])
    np.testing.assert_array_equal(ends + 1, np.cumsum([len(e) for e in episodes]))  # one end per episode
    low, high = action_bounds(read_metadata(path / "data"))
    np.testing.assert_array_equal(low, [-2, -2]) and np.testing.assert_array_equal(high, [2, 2])
    info = dt.dataset_info(str(path))
    assert (info.env_id, info.obs_dim, info.act_dim, info.episodes) == ("Pendulum-v1", 4, 2, 12)
    assert info.data_dir == path / "data" and info.ref_returns is None


# ------------------------------------------------------------------ rates and the table


def test_rates_leave_out_the_first_chunk_and_evaluations():
    chunks = [(100, 50.0), (200, 10.0), (300, 10.0)]  # (step at end, seconds): the first is warm-up
    assert dt.chunk_rate(chunks, batch=64) == pytest.approx(64 * 200 / 20.0)
    assert dt.chunk_rate(chunks[:1], batch=64) == pytest.approx(64 * 100 / 50.0)  # alone, it is all there is
    evals = [{"returns": [1.0, 2.0], "lengths": [100, 300], "seconds": 2.0},
             {"returns": [1.0], "lengths": None, "length_mean": 200.0, "seconds": 2.0}]
    assert dt.eval_rate(evals) == pytest.approx(600 / 4.0)
    assert dt.normalised(50.0, (0.0, 200.0)) == 25.0 and dt.normalised(50.0, None) == 50.0


def test_share_of_the_limit_follows_the_load_drift():
    """Each chunk is held against the matmul slices timed just before and after it: a machine twice as busy in
    the second half halves both the chunks' rate and the limit, and the share stays what it was."""
    flops = 1e9  # per update
    chunks = [(100, 99.0), (200, 10.0), (300, 20.0)]  # (step at end, seconds); the first (warm-up) is left out
    slices = [999.0, 20.0, 20.0, 10.0]  # GFLOP/s at the boundaries 0, 100, 200, 300
    # chunk 2: 100 updates in 10 s at a 20 GFLOP/s limit = 50%; chunk 3: 100 in 20 s at (20 + 10) / 2 = 15
    expected = 100 * 200 * flops / (10 * 20e9 + 20 * 15e9)
    assert dt.limit_share(chunks, slices, flops) == pytest.approx(expected)
    assert dt.limit_share(chunks, slices[:3], flops) is None  # a slice missing: no figure rather than a wrong one


def _summary(rlkit_rate, d3rlpy_rate, limit=400.0):
    flops = dt.update_flops(64, 20, 128, 3, 11, 3)
    return {"samples_per_s": {"rlkit": rlkit_rate, "d3rlpy": d3rlpy_rate}, "matmul_gflops": limit,
            "matmul_gflops_d3rlpy_process": limit * 0.99, "update_gflop": flops / 1e9,
            "share_of_limit_percent": {s: 100 * r * flops / 64 / (limit * 1e9)
                                       for s, r in (("rlkit", rlkit_rate), ("d3rlpy", d3rlpy_rate))},
            "scores": {"rlkit": {0: 1.0, 1000: 40.0}, "d3rlpy": {0: 1.5, 1000: 20.0}}, "score_kind": "normalised",
            "eval_env_steps_per_s": {"rlkit": 900.0, "d3rlpy": 300.0}, "target_return": 3600.0,
            "parameters": {"rlkit": 726_019, "d3rlpy": 726_275}}


def test_result_table_reads_ratio_share_and_scores():
    settings = dt.Settings(dataset="rlkit/hopper-medium-v0", steps=1000, chunk=100, eval_every=1000, eval_episodes=10)
    info = dt.DatasetInfo("rlkit/hopper-medium-v0", Path("x"), "Hopper-v5", 11, 3, 10, 1000, 1.0, None)
    figures = dt.figures_from([_summary(1000.0, 400.0), _summary(1200.0, 500.0)], settings, info, threads=2)
    summaries = [f.summary() for f in figures]
    samples, share, ceiling, score, evals, params, matmul = summaries
    assert samples["ratio_median"] == pytest.approx(np.median([2.5, 2.4])) and samples["goal_met"] is True
    flops_per_sample = dt.update_flops(64, 20, 128, 3, 11, 3) / 64
    assert share["rlkit"][0] == pytest.approx(100 * 1000 * flops_per_sample / 400e9)
    assert share["target"] == ">= 90" and share["target_met_rlkit"] is False  # 1000 samples/s is 57% here
    assert ceiling["rlkit"][0] == pytest.approx(400e9 / flops_per_sample)  # the limit in samples/s: 1745
    assert ceiling["ratio_median"] == pytest.approx(np.median([400e9 / flops_per_sample / r for r in (400, 500)]))
    assert "after 1,000 gradient steps" in score["name"] and score["rlkit"] == [40.0, 40.0] and not score["paired"]
    assert evals["ratio_median"] == pytest.approx(3.0) and params["ratio_median"] == pytest.approx(726_019 / 726_275)
    assert matmul["reference"][0] == pytest.approx(396.0)
    machine = {"date": "d", "cpu": "c", "cores": 2, "torch": "t", "torch_threads": 2, "sb3": "s", "python": "p",
               "device": "cpu"}
    section = markdown_section({"suite": "dt", "command": "rlkit bench dt --seeds 2 --threads 2", "notes": dt.NOTES,
                                "figures": summaries, "machine": machine})
    assert "| >= 2.0 | yes |" in section and "every seed >= 90 | **miss**" in section
    assert "rlkit/hopper-medium-v0" in section


def test_settings_come_from_the_environment(monkeypatch):
    _clear_settings(monkeypatch)
    monkeypatch.setenv("RLKIT_BENCH_DT_STEPS", "400")
    monkeypatch.setenv("RLKIT_BENCH_DT_REF_RETURNS", "-20.3,3234.3")
    s = dt.settings_from_env(quick=False)
    assert (s.steps, s.chunk, s.ref_returns) == (400, 100, (-20.3, 3234.3))
    monkeypatch.setenv("RLKIT_BENCH_DT_STEPS", "450")  # not a multiple of the chunk
    with pytest.raises(dt.ConfigError, match="multiples of the chunk"):
        dt.settings_from_env(quick=False)


def test_missing_d3rlpy_venv_is_one_line_saying_how_to_make_it(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(dt.PYTHON_ENV, raising=False)
    assert main(["bench", "dt", "--seeds", "1", "--quick", "--out", str(tmp_path / "out"), "--no-docs"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and dt.PYTHON_ENV in lines[0] and "pip install d3rlpy==2.8.1" in lines[0]
    monkeypatch.setenv(dt.PYTHON_ENV, str(tmp_path / "no-such-python"))
    assert main(["bench", "dt", "--seeds", "1", "--quick", "--out", str(tmp_path / "out"), "--no-docs"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "python3.11 -m venv" in lines[0]


# ------------------------------------------------------------------ end to end


@pytest.mark.skipif(_d3rlpy_python() is None, reason=f"d3rlpy's venv is not there ({dt.PYTHON_ENV} unset and no "
                                                     f"{DEFAULT_VENV_PYTHON}); make it with: {dt.MAKE_VENV}")
def test_quick_race_runs_end_to_end(tmp_path, monkeypatch, capsys):
    _clear_settings(monkeypatch)
    monkeypatch.setenv(dt.PYTHON_ENV, _d3rlpy_python())
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert main(["bench", "dt", "--seeds", "1", "--quick", "--out", str(out), "--no-docs"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed and all(line.startswith(f"[{SMOKE}] ") for line in printed)
    result = json.loads((out / "dt.json").read_text())
    names = [f["name"] for f in result["figures"]]
    assert names[0].startswith("training samples/s") and result["figures"][0]["goal"] == ">= 2.0"
    values = {f["name"].split(" (")[0]: (f["rlkit"][0], f["reference"][0]) for f in result["figures"]}
    assert all(v is not None and v > 0 for k, pair in values.items() if "return" not in k for v in pair)
    seed = result["per_seed"][0]
    assert [c[0] for c in seed["chunks"]["rlkit"]] == [c[0] for c in seed["chunks"]["d3rlpy"]] == [5, 10]
    assert [e["step"] for e in seed["evals"]["rlkit"]] == [e["step"] for e in seed["evals"]["d3rlpy"]] == [0, 10]
    assert abs(seed["parameters"]["rlkit"] - seed["parameters"]["d3rlpy"]) < 0.001 * seed["parameters"]["rlkit"]
