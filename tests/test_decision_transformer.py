"""The Decision Transformer (agents/decision_transformer.py): the model's masking, acting with a return-to-go
per env row, learning return-conditioned behaviour on a tiny synthetic dataset, and exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.agents import AGENTS, DecisionTransformer, DecisionTransformerConfig
from rlkit.agents.decision_transformer import attention_mask
from rlkit.config import build_run_config
from rlkit.contract.agent import StepRecord
from rlkit.errors import ConfigError
from rlkit.experience.datasets import Episode, write_dataset
from rlkit.experience.sequences import Sequences, SequenceBuffer
from rlkit.training.loops import train

OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
QUIET = {"progress": False, "tensorboard": False, "plot": False}


def _agent(observation_space=OBS, action_space=ACT, **fields) -> DecisionTransformer:
    torch.manual_seed(0)
    cfg = DecisionTransformerConfig(**{"embed_dim": 32, "n_layers": 2, "n_heads": 2, "context_length": 5,
                                       "max_timestep": 50, "dropout": 0.0, **fields})
    return DecisionTransformer(cfg, observation_space, action_space)


def _windows(B=4, K=5, obs_dim=3, act_dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(rtg=torch.randn(B, K, generator=g), obs=torch.randn(B, K, obs_dim, generator=g),
                actions=torch.rand(B, K, act_dim, generator=g) * 2 - 1,
                timesteps=torch.randint(0, 50, (B, K), generator=g))


# ------------------------------------------------------------------ the model


def test_causal_masking_a_later_token_never_changes_an_earlier_prediction():
    model = _agent().model.eval()
    w = _windows()
    before = model(w["rtg"], w["obs"], w["actions"], w["timesteps"], None)
    for t in range(1, 5):  # perturb step t's return, state and action: predictions at steps < t unchanged
        rtg, obs, actions = w["rtg"].clone(), w["obs"].clone(), w["actions"].clone()
        rtg[:, t] += 5.0
        obs[:, t] += 3.0
        actions[:, t] = -actions[:, t]
        after = model(rtg, obs, actions, w["timesteps"], None)
        torch.testing.assert_close(after[:, :t], before[:, :t], rtol=0, atol=1e-6)
        assert not torch.allclose(after[:, t], before[:, t])  # and the perturbed step's own prediction moves


def test_a_steps_own_action_is_not_seen_by_its_prediction():
    model = _agent().model.eval()
    w = _windows()
    before = model(w["rtg"], w["obs"], w["actions"], w["timesteps"], None)
    actions = w["actions"].clone()
    actions[:, -1] = -actions[:, -1]  # a_t follows s_t in the token order
    after = model(w["rtg"], w["obs"], actions, w["timesteps"], None)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)


def test_padding_is_invisible_to_the_real_steps_and_keeps_outputs_finite():
    model = _agent().model.eval()
    w = _windows()
    valid = torch.ones(4, 5, dtype=torch.bool)
    valid[0, :3] = False  # a window at an episode's start: left padding
    valid[1, :4] = False
    out = model(w["rtg"], w["obs"], w["actions"], w["timesteps"], valid)
    assert torch.isfinite(out).all()
    garbage = {k: v.clone() for k, v in w.items()}
    for row, pad in ((0, 3), (1, 4)):
        garbage["rtg"][row, :pad] = 1e3
        garbage["obs"][row, :pad] = -7.0
        garbage["actions"][row, :pad] = 0.9
        garbage["timesteps"][row, :pad] = 49
    out2 = model(garbage["rtg"], garbage["obs"], garbage["actions"], garbage["timesteps"], valid)
    torch.testing.assert_close(out2[valid], out[valid], rtol=0, atol=1e-6)
    # and a window whose real steps are the same, shifted to the end of an unpadded context, predicts alike
    short = model(w["rtg"][1:2, 4:], w["obs"][1:2, 4:], w["actions"][1:2, 4:], w["timesteps"][1:2, 4:], None)
    torch.testing.assert_close(out[1, 4], short[0, 0], rtol=0, atol=1e-5)


def test_attention_mask_is_causal_hides_padding_and_lets_each_token_see_itself():
    valid = torch.tensor([[False, True, True], [True, True, True]])
    mask = attention_mask(valid)[:, 0]
    assert mask.shape == (2, 3, 3)
    assert mask[1].equal(torch.ones(3, 3, dtype=torch.bool).tril())
    assert mask[0].tolist() == [[True, False, False], [False, True, False], [False, True, True]]


# ------------------------------------------------------------------ learning step


def test_update_loss_is_the_masked_mse_on_normalised_actions_and_warms_up_the_lr():
    agent = _agent(warmup_steps=4, lr=1e-3)
    B, K = 3, 5
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[0, :2] = False
    actions = torch.rand(B, K, 2) * 4 - 2                      # env units in [-2, 2]
    batch = Sequences(obs=torch.randn(B, K, 3), actions=actions, rewards=torch.zeros(B, K),
                      returns_to_go=torch.randn(B, K) * 100, timesteps=torch.randint(0, 50, (B, K)),
                      terminated=torch.zeros(B, K, dtype=torch.bool), mask=mask)
    agent.model.eval()  # dropout is 0: the same prediction in the update
    with torch.no_grad():
        pred = agent.model(batch.returns_to_go / agent.cfg.rtg_scale, batch.obs, actions / 2, batch.timesteps, mask)
    expected = ((pred - actions / 2).square().mean(-1) * mask).sum() / mask.sum()
    metrics = agent.update(batch)
    torch.testing.assert_close(metrics["loss"], expected, rtol=1e-5, atol=1e-6)
    assert metrics["lr"] == pytest.approx(1e-3 * 1 / 4)
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 1 / 4)  # what the optimizer stepped with
    for _ in range(5):
        metrics = agent.update(batch)
    assert metrics["lr"] == pytest.approx(1e-3)


def test_discrete_actions_use_cross_entropy_from_index_start():
    agent = _agent(action_space=gym.spaces.Discrete(3, start=1), lr=3e-3, warmup_steps=0)
    B, K = 8, 5
    obs = torch.randn(B, K, 3)
    actions = (obs[..., 0] > 0).long() * 2 + 1                 # 1 or 3: the sign of the state's first entry
    batch = Sequences(obs=obs, actions=actions, rewards=torch.zeros(B, K), returns_to_go=torch.zeros(B, K),
                      timesteps=torch.arange(K).expand(B, K), terminated=torch.zeros(B, K, dtype=torch.bool),
                      mask=torch.ones(B, K, dtype=torch.bool))
    first = agent.update(batch)["loss"]
    for _ in range(150):
        last = agent.update(batch)
    assert last["loss"] < 0.2 * first and last["accuracy"] == 1.0
    agent.cfg.target_return = 0.0  # the windows' returns-to-go; a window's first step is at timestep 0
    acts = agent.predict(obs[:, 0].numpy(), episode_start=np.ones(B, bool))
    np.testing.assert_array_equal(acts, actions[:, 0].numpy())  # the env's action ids, start included


# ------------------------------------------------------------------ acting


def test_act_keeps_a_return_to_go_and_context_per_env_row_and_resets_at_episode_start():
    agent = _agent(target_return=10.0, rtg_scale=1.0)
    n = 3
    step = lambda obs, prev, start: StepRecord.from_arrays(obs, "cpu", prev_reward=prev, episode_start=start)
    obs = np.random.default_rng(0).standard_normal((n, 3)).astype(np.float32)
    agent.act(step(obs, np.zeros(n), np.ones(n, bool)), explore=False)
    agent.act(step(obs, np.array([1.0, 2.0, 3.0]), np.zeros(n, bool)), explore=False)
    agent.act(step(obs, np.array([1.0, 1.0, 1.0]), np.array([False, True, False])), explore=False)
    memory = agent._memory
    assert memory["rtg"][:, -1].tolist() == [8.0, 10.0, 6.0]      # 10 - 1 - 1, reset, 10 - 3 - 1
    assert memory["timesteps"][:, -1].tolist() == [2, 0, 2]
    assert memory["valid"].sum(1).tolist() == [3, 1, 3]           # row 1's window was cleared at its start
    assert memory["rtg"][1].tolist() == [0, 0, 0, 0, 10.0]
    # the action really taken (here uniform, epsilon = 1) is what the window holds for that step
    taken = agent.act(step(obs, np.zeros(n), np.zeros(n, bool)), explore=False, epsilon=1.0)
    torch.testing.assert_close(agent._memory["actions"][:, -1], torch.as_tensor(taken) / 2.0)  # Box [-2, 2] -> [-1, 1]


def test_rows_act_independently_one_vector_forward_equals_one_env_at_a_time():
    agent = _agent()
    rng = np.random.default_rng(1)
    seq = rng.standard_normal((6, 2, 3)).astype(np.float32)     # 6 steps of 2 env rows
    rewards = rng.standard_normal((6, 2)).astype(np.float32)
    together = [agent.predict(seq[t], episode_start=np.full(2, t == 0), prev_reward=rewards[t - 1] if t else None)
                for t in range(6)]
    for row in range(2):
        alone = _agent()
        for t in range(6):
            a = alone.predict(seq[t, row:row + 1], episode_start=np.array([t == 0]),
                              prev_reward=rewards[t - 1, row:row + 1] if t else None)
            np.testing.assert_allclose(a[0], together[t][row], rtol=0, atol=1e-5)


# ------------------------------------------------------------------ learning return-conditioned behaviour


class _ConstantRewardTask:
    """Five steps; reward = the action's first coordinate. A return-conditioned policy asked for R acts R / 5."""

    steps = 5

    def rollout(self, agent, target: float, rows: int = 4) -> float:
        agent.cfg.target_return = target
        obs = np.zeros((rows, 3), np.float32)
        total, prev = np.zeros(rows), np.zeros(rows, np.float32)
        for t in range(self.steps):
            obs[:, 0] = t
            action = agent.predict(obs, episode_start=np.full(rows, t == 0), prev_reward=prev)
            prev = np.clip(action[:, 0], -1, 1).astype(np.float32)
            total += prev
        return float(total.mean())


def test_learns_on_a_tiny_dataset_that_a_higher_target_return_yields_a_higher_return():
    task = _ConstantRewardTask()
    act = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    episodes = []
    for level in np.linspace(-1, 1, 9):  # each episode repeats one action level: return = 5 * level
        obs = np.zeros((6, 3), np.float32)
        obs[:, 0] = np.arange(6)
        actions = np.full((5, 1), level, np.float32)
        episodes.append(Episode(obs, actions, actions[:, 0].copy(), np.zeros(5, bool), np.r_[np.zeros(4, bool), True]))
    buffer = SequenceBuffer.from_episodes(episodes, OBS, act, length=5, seed=0)
    agent = _agent(action_space=act, rtg_scale=5.0, lr=3e-3, warmup_steps=20)

    class _Data:
        pass

    data = _Data()
    data.episodes = episodes
    agent.observe_dataset(data)
    for _ in range(300):
        agent.update(buffer.sample(32))
    high, middle, low = (task.rollout(agent, target) for target in (5.0, 0.0, -5.0))
    assert high > 3.5 and low < -3.5, (high, middle, low)
    assert high > middle > low


# ------------------------------------------------------------------ runs: offline training, exact resume


def _dataset(root: Path, monkeypatch) -> str:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(0)
    episodes = []
    for i in range(4):
        o, _ = env.reset(seed=i)
        obs, acts, rews = [o], [], []
        for _ in range(40):
            a = rng.uniform(-2, 2, (1,)).astype(np.float32)
            o, r, *_ = env.step(a)
            obs.append(o), acts.append(a), rews.append(r)
        episodes.append(Episode(np.array(obs), np.array(acts), np.array(rews, np.float32), np.zeros(40, bool),
                                np.r_[np.zeros(39, bool), True]))
    write_dataset("rlkit/dt-test-v0", episodes, env.observation_space, env.action_space, env_id="Pendulum-v1")
    return "rlkit/dt-test-v0"


def _config(dataset: str, total: int, env: str | None = None):
    return build_run_config({
        "seed": 3, "env": {"id": env}, "offline": {"dataset": dataset},
        "agent": {"name": "decision_transformer", "embed_dim": 32, "n_layers": 1, "context_length": 4,
                  "max_timestep": 200, "warmup_steps": 5, "target_return": -300.0},
        "train": {"total_steps": total, "batch_size": 8, "eval_every": 10, "eval_episodes": 2, "checkpoint_every": 10},
        "log": {**QUIET, "log_every": 5}})


def _records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in ("time", "sps")}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, monkeypatch):
    dataset = _dataset(tmp_path / "data", monkeypatch)
    train(_config(dataset, 30), tmp_path / "whole")
    train(_config(dataset, 20), tmp_path / "split")
    train(_config(dataset, 30), tmp_path / "split", resume=True)
    assert _records(tmp_path / "split") == _records(tmp_path / "whole")
    whole = torch.load(tmp_path / "whole" / "checkpoints" / "latest.pt", weights_only=True)["agent"]["model"]
    split = torch.load(tmp_path / "split" / "checkpoints" / "latest.pt", weights_only=True)["agent"]["model"]
    assert whole.keys() == split.keys() and all(torch.equal(whole[k], split[k]) for k in whole)
    # the dataset's state statistics travel in the weights
    assert not torch.equal(whole["state_encoder.standardize.std"], torch.ones(3))


def test_an_env_bound_run_evaluates_with_its_target_return_and_logs_the_loss(tmp_path, monkeypatch):
    dataset = _dataset(tmp_path / "data", monkeypatch)
    summary = train(_config(dataset, 10, env="Pendulum-v1"), tmp_path / "run")
    evals = [r for r in _records(tmp_path / "run") if r["kind"] == "eval"]
    assert [r["step"] for r in evals][-1] == 10 and all(r["length_mean"] == 200 for r in evals)
    assert np.isfinite(summary["final_eval"]["return_mean"])
    assert any("loss" in r for r in _records(tmp_path / "run") if r["kind"] == "train")
    # rlkit eval --target-return: the same weights asked for another return
    from rlkit.cli import main

    import rlkit.agents.decision_transformer as dt_module

    first_rtg = []
    original = dt_module.DecisionTransformer.act

    def act(self, step, explore, epsilon=None):
        actions = original(self, step, explore, epsilon)
        if not first_rtg:
            first_rtg.append(float(self._memory["rtg"][0, -1]) * self.cfg.rtg_scale)
        return actions

    monkeypatch.setattr(dt_module.DecisionTransformer, "act", act)
    assert main(["eval", str(tmp_path / "run"), "--episodes", "2", "--target-return", "-150"]) == 0
    assert first_rtg == [pytest.approx(-150.0)]  # the episode is conditioned on the flag's return
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["target_return"] == -150.0
    assert main(["eval", str(tmp_path / "run"), "--episodes", "2", "--target-return", "nan"]) == 2


def test_target_return_flag_on_an_agent_not_conditioned_on_returns_is_one_line_exit_2(tmp_path, capsys):
    from rlkit.cli import main

    cfg = tmp_path / "dqn.yaml"
    cfg.write_text("env: {id: CartPole-v1}\nagent: {name: dqn}\ntrain: {total_steps: 20, learning_starts: 10, "
                   "eval_every: 0, eval_episodes: 1}\nlog: {progress: false, tensorboard: false, plot: false}\n")
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--episodes", "1", "--target-return", "10"]) == 2
    err = capsys.readouterr().err
    assert "not conditioned on a return" in err and "Traceback" not in err


@pytest.mark.parametrize("fields, words", [
    ({"n_heads": 3}, "must divide agent.embed_dim"),
    ({"dropout": 1.0}, "agent.dropout"),
    ({"context_length": 0}, "agent.context_length"),
    ({"activation": "tanh"}, "agent.activation"),
    ({"target_return": float("nan")}, "agent.target_return"),
])
def test_config_errors(fields, words):
    with pytest.raises(ConfigError, match=words):
        DecisionTransformerConfig(**fields)


def test_registered_offline_only_and_reads_sequences():
    config_cls, agent_cls = AGENTS["decision_transformer"]
    assert config_cls is DecisionTransformerConfig and agent_cls is DecisionTransformer
    assert agent_cls.capabilities.experience == "sequences" and not agent_cls.capabilities.online
    from rlkit.config import check_capabilities

    with pytest.raises(ConfigError, match="offline"):
        cfg = build_run_config({"env": {"id": "Pendulum-v1"}, "agent": {"name": "decision_transformer"}})
        check_capabilities(cfg, DecisionTransformer)


def test_atari_frames_go_through_the_nature_cnn_declared_as_the_encoder():
    frames = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    agent = _agent(observation_space=frames, action_space=gym.spaces.Discrete(6), context_length=3, rtg_scale=1.0)
    assert type(agent.model.state_encoder.base).__name__ == "NatureCNN"
    assert not agent.model.state_encoder.standardize.enabled  # images are scaled by the CNN, not standardised
    B, K = 2, 3
    obs = torch.randint(0, 256, (B, K, 4, 84, 84), dtype=torch.uint8)
    batch = Sequences(obs=obs, actions=torch.randint(0, 6, (B, K)), rewards=torch.zeros(B, K),
                      returns_to_go=torch.full((B, K), 5.0), timesteps=torch.arange(K).expand(B, K),
                      terminated=torch.zeros(B, K, dtype=torch.bool), mask=torch.ones(B, K, dtype=torch.bool))
    metrics = agent.update(batch)
    assert torch.isfinite(metrics["loss"]) and "accuracy" in metrics
    features = agent.encode(obs[:, 0])                      # what auxiliary modules attach to: [B, h]
    assert features.shape == (B, 32)
    actions = agent.predict(obs[:, 0].numpy(), episode_start=np.ones(B, bool))
    assert actions.shape == (B,) and actions.dtype == np.int64


@pytest.mark.parametrize("padded", [False, True])
def test_the_last_block_on_state_tokens_only_equals_the_full_computation(padded):
    agent = _agent(n_layers=3)
    model = agent.model.eval()
    w = _windows()
    valid = None
    if padded:
        valid = torch.ones(4, 5, dtype=torch.bool)
        valid[0, :2] = False
    pruned = model(w["rtg"], w["obs"], w["actions"], w["timesteps"], valid)
    full = model(w["rtg"], w["obs"], w["actions"], w["timesteps"], valid, all_tokens=True)
    torch.testing.assert_close(pruned, full, rtol=1e-5, atol=1e-6)
    # and the gradients agree too
    model.train()
    for p in model.parameters():
        p.grad = None
    model(w["rtg"], w["obs"], w["actions"], w["timesteps"], valid).square().sum().backward()
    pruned_grads = [p.grad.clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    model(w["rtg"], w["obs"], w["actions"], w["timesteps"], valid, all_tokens=True).square().sum().backward()
    for a, b in zip(pruned_grads, (p.grad for p in model.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_observe_dataset_fits_the_state_mean_and_std_and_the_update_clips_the_gradient_norm():
    agent = _agent(max_grad_norm=0.25, warmup_steps=0, lr=1e-3)

    class _Data:
        episodes = [Episode(np.array([[1.0, 0, 10], [3.0, 0, 30], [9.0, 9, 9]], np.float32), np.zeros((2, 2), np.float32),
                            np.zeros(2, np.float32), np.zeros(2, bool), np.array([False, True]))]

    agent.observe_dataset(_Data())
    standardize = agent.model.state_encoder.standardize
    torch.testing.assert_close(standardize.mean, torch.tensor([2.0, 0.0, 20.0]))      # the final obs is left out
    torch.testing.assert_close(standardize.std, torch.tensor([1.0, 0.0, 10.0]) + 1e-6)
    B, K = 4, 5
    batch = Sequences(obs=torch.randn(B, K, 3) * 100, actions=torch.rand(B, K, 2) * 4 - 2, rewards=torch.zeros(B, K),
                      returns_to_go=torch.randn(B, K) * 1e4, timesteps=torch.randint(0, 50, (B, K)),
                      terminated=torch.zeros(B, K, dtype=torch.bool), mask=torch.ones(B, K, dtype=torch.bool))
    before = [p.detach().clone() for p in agent.model.parameters()]
    metrics = agent.update(batch)
    assert metrics["grad_norm"] > 0.25  # the norm before clipping is reported; the step used the clipped gradient
    total = torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in agent.model.parameters() if p.grad is not None))
    assert total == pytest.approx(0.25, rel=1e-4)
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.model.parameters()))
