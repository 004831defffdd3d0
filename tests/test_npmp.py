"""The NPMP motor-skill module (agents/npmp.py) and its expert data (rlkit/training/expert_rollouts.py):
the loss terms against hand computations, the expert dataset's round trip, a short training that lowers the
loss, the frozen decoder under a high-level optimizer, closed-loop acting, and the one-line errors."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

import rlkit.envs  # noqa: F401  (registers rlkit/HumanoidImitation-v0)
from rlkit.agents import AGENTS
from rlkit.agents.npmp import NPMP, NPMPConfig, ar1_prior, gaussian_kl, gaussian_nll, load_skill
from rlkit.cli import main
from rlkit.contract.agent import StepRecord
from rlkit.errors import ConfigError, DatasetError
from rlkit.experience.datasets import load_dataset
from rlkit.experience.sequences import SequenceBuffer
from rlkit.runfiles.export import export_agent
from rlkit.training.expert_rollouts import (
    LABEL_KEY, absolute_pd_action, check_expert_dataset, default_experts, heldout_action_error, load_expert,
    rollout_expert, write_expert_dataset)

TINY = {"latent_dim": 4, "posterior_hidden": [32], "decoder_hidden": [32], "seq_steps": 5}


# --------------------------------------------------------------------------------------
# The loss terms, by hand
# --------------------------------------------------------------------------------------


def test_ar1_prior_mean_and_std_by_hand():
    mean, std = ar1_prior(torch.tensor([[1.0, -2.0]]), alpha=0.6)
    assert torch.allclose(mean, torch.tensor([[0.6, -1.2]]))
    assert torch.allclose(std, torch.tensor([[0.8, 0.8]]))                    # sqrt(1 - 0.36)
    # its stationary distribution is N(0, I): Var z_t = alpha^2 * 1 + (1 - alpha^2) = 1
    _, std95 = ar1_prior(torch.zeros(1, 1), alpha=0.95)
    assert math.isclose(0.95 ** 2 + float(std95) ** 2, 1.0, rel_tol=1e-6)


def test_gaussian_kl_by_hand_and_against_torch():
    mq, sq = torch.tensor([0.5, 0.0]), torch.tensor([0.4, 1.0])
    mp, sp = torch.tensor([0.6, -1.2]), torch.tensor([0.8, 0.8])
    # dim 1: log(0.8/0.4) + (0.16 + 0.01) / 1.28 - 0.5 = 0.693147 + 0.132813 - 0.5 = 0.325960
    # dim 2: log(0.8/1.0) + (1.00 + 1.44) / 1.28 - 0.5 = -0.223144 + 1.906250 - 0.5 = 1.183106
    assert math.isclose(float(gaussian_kl(mq, sq, mp, sp)), 0.325960 + 1.183106, abs_tol=1e-5)
    reference = torch.distributions.kl_divergence(torch.distributions.Normal(mq, sq), torch.distributions.Normal(mp, sp))
    assert torch.allclose(gaussian_kl(mq, sq, mp, sp), reference.sum())
    assert float(gaussian_kl(mp, sp, mp, sp)) == pytest.approx(0.0, abs=1e-7)


def test_fixed_std_gaussian_nll_by_hand():
    # (0.1^2 + 0.2^2) / (2 * 0.1^2) + 2 (log 0.1 + 0.5 log 2 pi) = 2.5 - 2.767293 = -0.267293
    nll = gaussian_nll(torch.zeros(2), torch.tensor([0.1, -0.2]), std=0.1)
    assert math.isclose(float(nll), -0.267293, abs_tol=1e-5)


# --------------------------------------------------------------------------------------
# Expert data
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def expert_data(tmp_path_factory):
    """``test/experts-v0``: 2 noisy rollouts of each shipped expert (walk, run) in a temporary dataset root."""
    root = tmp_path_factory.mktemp("datasets")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(root))
        _, stats = write_expert_dataset("test/experts-v0", episodes=2, seed=3, log=lambda *_: None)
        data = load_dataset("test/experts-v0")
    return data, stats, root


def test_expert_dataset_round_trip(expert_data):
    data, stats, _ = expert_data
    summary = check_expert_dataset(data)
    assert summary["obs_dim"] == 501 and summary["action_dim"] == 28
    assert {c: n["steps"] for c, n in summary["clips"].items()} == {c: s["steps"] for c, s in stats.items()}
    # the same rollouts again, directly: what was written is what was rolled out, bit for bit
    walk = load_expert(default_experts()[0])
    episodes, _ = rollout_expert(walk, 2, 0.1, seed=3, clip_index=0)
    for written, rolled in zip(data.episodes[:2], episodes):
        for key in ("observations", "actions", "rewards", "terminations", "truncations"):
            np.testing.assert_array_equal(getattr(written, key), getattr(rolled, key))
        for key in (LABEL_KEY, "expert_actions_raw", "clip_index", "frame"):
            np.testing.assert_array_equal(written.infos[key], rolled.infos[key])
    ep = data.episodes[0]
    noise = ep.actions - ep.infos[LABEL_KEY]                      # executed = clip(label + 0.1 eps)
    assert 0.07 < float(noise.std()) < 0.12
    assert data.metadata["rlkit"]["clips"] == ["walk", "run"] and data.metadata["rlkit"]["act_noise"] == 0.1
    assert set(np.unique(np.concatenate([e.infos["clip_index"] for e in data.episodes]))) == {0, 1}


def test_absolute_pd_action_is_the_same_physics_as_the_residual_one():
    expert = load_expert(default_experts()[0])
    residual = expert.make_env()
    absolute = gym.make("rlkit/HumanoidImitation-v0", **{**expert.env_kwargs, "action_mode": "pd"})
    obs, _ = residual.reset(seed=5)
    obs2, _ = absolute.reset(seed=5)
    np.testing.assert_array_equal(obs, obs2)
    for _ in range(5):
        a = expert.agent.predict(obs[None], deterministic=True)[0]
        b = absolute_pd_action(residual.unwrapped, a)
        obs, *_ = residual.step(a)
        obs2, *_ = absolute.step(b)
        np.testing.assert_allclose(obs, obs2, atol=1e-3)


def test_check_expert_dataset_refuses_broken_reference_frames(expert_data):
    """The check reads infos/frame too: the reference frame of each observation, one more per step."""
    from dataclasses import replace as dc_replace

    data, _, _ = expert_data
    ep = data.episodes[0]
    assert len(ep) > 2
    for bad in (lambda f: f[::-1].copy(), lambda f: f - f[0] - 1, lambda f: f[:-1]):
        episodes = [dc_replace(ep, infos={**ep.infos, "frame": bad(ep.infos["frame"])}), *data.episodes[1:]]
        tampered = dc_replace(data, episodes=episodes)
        with pytest.raises(DatasetError, match="episode 0: infos/frame"):
            check_expert_dataset(tampered)


def test_check_expert_dataset_refuses_other_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    assert main(["collect", "random", "--env", "Pendulum-v1", "--episodes", "1", "--out", "test/p-v0"]) == 0
    with pytest.raises(DatasetError, match="not written by `rlkit dataset experts`"):
        check_expert_dataset("test/p-v0")


# --------------------------------------------------------------------------------------
# Training, acting, the frozen skill
# --------------------------------------------------------------------------------------


def _agent(data, **fields) -> NPMP:
    cfg = NPMPConfig(**{**TINY, "lr": 3e-3, **fields})
    agent = NPMP(cfg, data.observation_space, data.action_space, seed=0)
    agent.observe_dataset(data)
    return agent


def test_short_training_lowers_the_loss(expert_data):
    torch.manual_seed(0)
    data = expert_data[0]
    agent = _agent(data)
    episodes = agent.cfg.select_episodes(data.episodes)
    np.testing.assert_array_equal(episodes[0].actions, data.episodes[0].infos[LABEL_KEY])  # labels, not noise
    buffer = SequenceBuffer.from_episodes(episodes, data.observation_space, data.action_space, length=5, seed=0)
    losses = [float(agent.update(buffer.sample(16))["loss"]) for _ in range(120)]
    assert all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 5.0, (losses[:10], losses[-10:])


def test_act_keeps_one_latent_per_row_and_resets_it_at_episode_start(expert_data):
    data = expert_data[0]
    agent = _agent(data)
    obs = torch.as_tensor(np.stack([data.episodes[0].observations[0], data.episodes[2].observations[0]]))
    first = agent.act(StepRecord.from_arrays(obs.numpy(), "cpu", episode_start=np.ones(2, bool)), explore=False)
    again = agent.act(StepRecord.from_arrays(obs.numpy(), "cpu", episode_start=np.zeros(2, bool)), explore=False)
    assert not np.allclose(first, again)                             # z_{t-1} carried: another action
    reset = agent.act(StepRecord.from_arrays(obs.numpy(), "cpu", episode_start=np.array([True, False])),
                      explore=False)
    np.testing.assert_allclose(reset[0], first[0], atol=1e-6)        # row 0 starts over from z_0 = 0
    assert first.shape == (2, 28) and np.all(np.abs(first) <= 1.0)


def _export(agent: NPMP, path):
    config = {"env": {"id": "rlkit/HumanoidImitation-v0", "kwargs": {"clips": ["walk", "run"], "action_mode": "pd"}},
              "offline": {"dataset": "test/experts-v0"},
              "agent": {"name": "npmp", **{k: getattr(agent.cfg, k) for k in (*TINY, "proprio_dim", "layer_norm")}}}
    return export_agent(agent, yaml.safe_dump(config), path, {"agent": "npmp"})


def test_frozen_skill_does_not_move_under_a_high_level_optimizer(expert_data, tmp_path):
    data = expert_data[0]
    agent = _agent(data)
    decoder, spec = load_skill(_export(agent, tmp_path / "skill"))
    assert (spec.latent_dim, spec.proprio_dim, spec.action_dim) == (4, 116, 28)
    assert not any(p.requires_grad for p in decoder.parameters()) and not decoder.training
    obs = torch.as_tensor(data.episodes[0].observations[:8])
    z = torch.randn(8, 4)
    torch.testing.assert_close(decoder.act(obs, z), agent.decoder.act(obs, z))   # the trained decoder, loaded

    high_level = torch.nn.Linear(spec.proprio_dim, spec.latent_dim)              # a policy whose action is z
    optimizer = torch.optim.Adam(high_level.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in decoder.state_dict().items()}
    policy_before = high_level.weight.detach().clone()
    for _ in range(3):
        loss = decoder.act(obs, high_level(obs[:, : spec.proprio_dim])).square().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(p.grad is None for p in decoder.parameters())
    for key, value in decoder.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert not torch.equal(high_level.weight, policy_before)                     # the gradient reached z's policy


def test_offline_run_exports_and_evaluates(expert_data, tmp_path, monkeypatch):
    """`rlkit train` on the expert data (the shipped config, tiny), `rlkit export`, `rlkit eval` in closed loop."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(expert_data[2]))
    from rlkit.config import configs_dir

    run, out = tmp_path / "run", tmp_path / "export"
    overrides = ["offline.dataset=test/experts-v0", "train.total_steps=6", "train.eval_every=6",
                 "train.eval_episodes=1", "train.checkpoint_every=6", "train.batch_size=4", "agent.seq_steps=3",
                 "agent.posterior_hidden=[16]", "agent.decoder_hidden=[16]", "log.progress=false",
                 "log.tensorboard=false", "log.plot=false"]
    assert main(["train", str(configs_dir() / "npmp_humanoid.yaml"), *overrides, f"--run-dir={run}"]) == 0
    assert main(["export", str(run), str(out)]) == 0
    assert main(["eval", str(out), "--episodes", "2"]) == 0
    decoder, spec = load_skill(out)
    assert spec.env_kwargs["action_mode"] == "pd" and decoder.body[0].in_features == 116 + 60
    rows = heldout_action_error(out, expert_data[0])  # open-loop action error per clip on recorded episodes
    assert [r["clip"] for r in rows] == ["walk", "run"]
    assert all(math.isfinite(r["mse"]) and r["steps"] > 0 and r["zero_action_mse"] > 0 for r in rows)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fields, match", [
    ({"ar_coefficient": 1.0}, "agent.ar_coefficient must lie in"),
    ({"ar_coefficient": -0.1}, "agent.ar_coefficient must lie in"),
    ({"kl_weight": -1.0}, "agent.kl_weight must be a finite number >= 0"),
    ({"action_std": 0.0}, "agent.action_std must be a finite number > 0"),
    ({"latent_dim": 0}, "agent.latent_dim must be >= 1"),
    ({"decoder_hidden": []}, "agent.decoder_hidden must be a non-empty list"),
    ({"activation": "sigmoid"}, "agent.activation must be one of"),
])
def test_bad_config_values_are_one_line_errors(fields, match):
    with pytest.raises(ConfigError, match=match):
        NPMPConfig(**fields)


def test_bad_inputs_are_one_line_errors(expert_data, tmp_path, capsys):
    data = expert_data[0]
    with pytest.raises(ConfigError, match="agent.proprio_dim .* must be smaller"):
        NPMP(NPMPConfig(**TINY, proprio_dim=501), data.observation_space, data.action_space)
    with pytest.raises(DatasetError, match="agent.label_key 'mean_actions'"):
        NPMPConfig(label_key="mean_actions").select_episodes(data.episodes)
    with pytest.raises(ConfigError, match="not an exported NPMP"):
        load_skill(tmp_path)
    with pytest.raises(ConfigError, match="tracks clips"):  # a module over two clips is no clip expert
        agent = _agent(data)
        load_expert(_export(agent, tmp_path / "two_clips"))
    assert main(["dataset", "experts", "--episodes", "0", "--out", "test/none-v0"]) == 2
    assert "episodes per expert must be >= 1" in capsys.readouterr().err
    assert AGENTS["npmp"] == (NPMPConfig, NPMP)
