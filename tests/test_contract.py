"""The agent contract (rlkit.contract): every agent on it, the auxiliary-loss hook, the capability checks.

- one parametrised round trip per agent: a run stopped half-way and resumed equals the uninterrupted run
  record for record, its export acts exactly as its checkpoint, and ``rlkit.load`` reads both;
- inverse dynamics attached by config to each agent: its loss falls over a short run, and the encoder's
  gradient is the agent's own plus exactly ``weight`` times the auxiliary loss's gradient;
- a run with it logs ``aux/inverse_dynamics`` to metrics.jsonl and TensorBoard;
- a config asking an agent for a capability it lacks fails at start with one line (one test each);
- the declaration is checked: an undeclared trainable parameter or a target with gradients is an error.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlkit
import rlkit.envs  # noqa: F401  (registers rlkit/PointGoal-v0)
from rlkit.agents import AGENTS, DQN, DQNConfig
from rlkit.cli import main
from rlkit.config import build_run_config
from rlkit.contract.agent import Agent, Capabilities, StepRecord
from rlkit.contract.parts import DeclarationError, acting, target_of, trains
from rlkit.errors import ConfigError
from rlkit.experience.replay import ReplayBuffer
from rlkit.training.build import build_agent, run_spaces
from rlkit.training.collector import Collector

LOG = {"progress": False, "tensorboard": False, "plot": False, "log_every": 100}


def _config(agent: str, total: int, **agent_fields) -> dict:
    """A small run of ``agent`` (online on a small env; BC offline on the ``rlkit/contract-v0`` dataset)."""
    small = {"hidden": [32, 32]}
    if agent == "dqn":
        data = {"env": {"id": "CartPole-v1", "num_envs": 2},
                "agent": {"name": "dqn", **small, "target_update_every": 20, "eps_decay_steps": 200, "lr": 1e-3},
                "train": {"learning_starts": 100, "train_every": 2, "batch_size": 32}}
    elif agent == "sac":
        data = {"env": {"id": "Pendulum-v1", "num_envs": 1},
                "agent": {"name": "sac", "actor_hidden": [32, 32], "critic_hidden": [32, 32], "random_steps": 50},
                "train": {"learning_starts": 50, "batch_size": 32}}
    elif agent == "mpo":
        data = {"env": {"id": "Pendulum-v1", "num_envs": 1},
                "agent": {"name": "mpo", "policy_hidden": [32, 32], "critic_hidden": [32, 32], "num_samples": 4,
                          "target_update_every": 20},
                "train": {"learning_starts": 50, "batch_size": 32}}
    elif agent == "ris":
        data = {"env": {"id": "rlkit/PointGoal-v0", "num_envs": 2, "kwargs": {"reward_type": "sparse"}},
                "agent": {"name": "ris", "actor_hidden": [32, 32], "critic_hidden": [32, 32],
                          "subgoal_hidden": [32, 32], "subgoal_samples": 4, "random_steps": 50},
                "train": {"learning_starts": 50, "batch_size": 32,
                          "replay": {"her": {"strategy": "future", "relabel_ratio": 0.8}}}}
    else:
        data = {"env": {"id": "Pendulum-v1", "num_envs": 1}, "offline": {"dataset": "rlkit/contract-v0"},
                "agent": {"name": "bc", **small, "loss": "gaussian"}, "train": {"batch_size": 32}}
    data["agent"].update(agent_fields)
    data["train"].update({"total_steps": total, "eval_every": total // 2, "eval_episodes": 2,
                          "checkpoint_every": total // 2})
    data["train"].setdefault("replay", {})["capacity"] = 5000
    data.update(seed=2, log=dict(LOG), device="cpu")
    return data


@pytest.fixture
def contract_dataset(tmp_path, monkeypatch):
    """``rlkit/contract-v0``: 3 uniform-random Pendulum episodes (600 steps) for BC."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    assert main(["collect", "random", "--env", "Pendulum-v1", "--episodes", "3", "--out", "rlkit/contract-v0",
                 "--seed", "4"]) == 0


def _records(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        record.pop("time", None)
        record.pop("sps", None)
    return records


def _observations(cfg, n: int = 6):
    """``n`` observations of the run's env (seeded), as a batch."""
    envs = gym.make_vec(cfg.env.id, num_envs=n, vectorization_mode="sync", **cfg.env.kwargs)
    obs, _ = envs.reset(seed=11)
    envs.close()
    return obs


# --------------------------------------------------------------------------------------
# Resume, export and load: one round trip per agent
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("agent", ["dqn", "sac", "mpo", "bc", "ris"])
def test_resume_export_and_load_round_trip(agent, tmp_path, contract_dataset):
    total = 300 if agent != "dqn" else 400
    data = _config(agent, total)
    full, part = tmp_path / "full", tmp_path / "part"
    rlkit.train(data, run_dir=full)
    rlkit.train(data, run_dir=part, overrides={"train.total_steps": total // 2})
    rlkit.train(run_dir=part, resume=True, overrides={"train.total_steps": total})
    assert _records(part) == _records(full)  # exact resume: every episode, train record and evaluation

    from rlkit.runfiles.checkpoint import load_checkpoint
    from rlkit.runfiles.runs import LATEST

    a, b = load_checkpoint(full / LATEST)["agent"], load_checkpoint(part / LATEST)["agent"]
    assert a.keys() == b.keys()
    for name, value in a.items():
        if isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values()):
            for key in value:
                torch.testing.assert_close(b[name][key], value[key], rtol=0, atol=0)

    out = tmp_path / "export"
    assert main(["export", str(full), str(out), "--checkpoint", "latest"]) == 0
    from_checkpoint, from_export = rlkit.load(full, checkpoint="latest"), rlkit.load(out)
    obs = _observations(from_checkpoint.config)
    np.testing.assert_array_equal(from_export.predict(obs), from_checkpoint.predict(obs))
    acting = [n for n, role in from_checkpoint.agent.parts.roles.items() if role == "acts"]
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert {k.split(".", 1)[0] for k in f.keys()} <= set(acting)  # acting parts only: no critic, no optimizer


# --------------------------------------------------------------------------------------
# The auxiliary-loss hook: inverse dynamics on every agent
# --------------------------------------------------------------------------------------

AUX = [{"name": "inverse_dynamics", "weight": 1.0, "hidden": [64]}]
NO_CLIP = {"dqn": {"max_grad_norm": None}, "mpo": {"max_grad_norm": None, "critic_lr": 1e-3}, "sac": {"critic_lr": 1e-3}}


def _aux_agent(agent: str, weight: float | None, seed: int = 0):
    """(agent, cfg) built from the small config with inverse dynamics at ``weight`` (None: no aux module)."""
    fields = dict(NO_CLIP.get(agent, {}))
    if agent != "ris":
        fields["encoder_hidden"] = [32]
    if weight is not None:
        fields["aux"] = [{**AUX[0], "weight": weight}]
    cfg = build_run_config(_config(agent, 100, **fields))
    torch.manual_seed(seed)
    return build_agent(cfg, *run_spaces(cfg), torch.device("cpu")), cfg


def _transitions(agent, cfg, steps: int = 400) -> ReplayBuffer:
    """A one-step replay of ``steps`` random-action transitions in the run's env (RIS's hook attached)."""
    envs = gym.make_vec(cfg.env.id, num_envs=1, vectorization_mode="sync", **cfg.env.kwargs)
    buffer = ReplayBuffer.from_spaces(envs.single_observation_space, envs.single_action_space, 5000, 1,
                                      gamma=0.99, seed=0, sample_hook=agent.make_sample_hook())
    collector = Collector(envs, seed=0)
    space = envs.single_action_space
    space.seed(0)
    from rlkit.contract.agent import FunctionPolicy

    random_policy = FunctionPolicy(lambda obs, starts, prev_reward: np.stack([space.sample() for _ in starts]))
    for _ in range(steps):
        step = collector.step(random_policy, explore=True)
        buffer.add(step.obs, step.actions, step.rewards, step.terminated, step.truncated, step.autoreset)
    envs.close()
    return buffer


def _encoder_params(agent) -> list[torch.Tensor]:
    return [p for p in agent.parts.module_at(agent.parts.encoder).parameters()]


@pytest.mark.parametrize("agent", ["dqn", "sac", "mpo", "bc", "ris"])
def test_inverse_dynamics_loss_falls_and_its_gradient_reaches_the_encoder(agent, contract_dataset):
    with_aux, cfg = _aux_agent(agent, weight=1.0)
    without, _ = _aux_agent(agent, weight=None)
    assert set(with_aux.aux_modules) == {"inverse_dynamics"} and not without.aux_modules
    for p, q in zip(_encoder_params(with_aux), _encoder_params(without)):  # the same networks to start from
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    buffer = _transitions(with_aux, cfg)
    torch.manual_seed(5)
    batch = buffer.sample(64)

    # the gradient: the agent's own plus weight * d(aux loss)/d(encoder), in the same step
    module = with_aux.aux_modules["inverse_dynamics"]
    params = _encoder_params(with_aux)
    assert params, f"{agent}'s encoder has no parameters to shape"
    aux_grads = torch.autograd.grad(module.loss(batch, with_aux), params)
    metrics = with_aux.update(batch)
    without.update(batch)
    assert "aux/inverse_dynamics" in metrics and float(metrics["aux/inverse_dynamics"]) > 0
    for p_with, p_without, g_aux in zip(params, _encoder_params(without), aux_grads):
        assert p_with.grad is not None
        torch.testing.assert_close(p_with.grad - p_without.grad, g_aux, rtol=1e-3, atol=1e-5)

    # the loss falls over a short run
    losses = [float(with_aux.update(buffer.sample(64))["aux/inverse_dynamics"]) for _ in range(300)]
    first, last = np.mean(losses[:20]), np.mean(losses[-20:])
    assert last < 0.75 * first, f"{agent}: inverse-dynamics loss {first:.3f} -> {last:.3f}"


def test_run_with_inverse_dynamics_logs_aux_to_metrics_and_tensorboard(tmp_path):
    data = _config("dqn", 400, encoder_hidden=[32], aux=AUX)
    data["log"]["tensorboard"] = True
    run = rlkit.train(data, run_dir=tmp_path / "run")
    trains = [r for r in run.metrics("train") if r["updates"] > 0]
    assert trains and all(np.isfinite(r["aux/inverse_dynamics"]) for r in trains)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    assert "train/aux/inverse_dynamics" in events.Tags()["scalars"]


def test_aux_config_round_trips_through_the_run_directory(tmp_path):
    data = _config("dqn", 200, encoder_hidden=[32], aux=AUX)
    rlkit.train(data, run_dir=tmp_path / "run")
    policy = rlkit.load(tmp_path / "run", checkpoint="latest")  # rebuilt from config.yaml, aux included
    assert list(policy.agent.aux_modules) == ["inverse_dynamics"]
    assert policy.config.agent.aux[0].weight == 1.0 and policy.config.agent.aux[0].hidden == [64]


# --------------------------------------------------------------------------------------
# Capabilities: a config asking for what the agent lacks fails at start, in one line
# --------------------------------------------------------------------------------------


def _refused(data: dict, match: str) -> str:
    with pytest.raises(ConfigError, match=match) as info:
        build_run_config(data)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_action_kind_is_checked_when_the_agent_is_built(tmp_path):
    data = _config("sac", 100)
    data["env"]["id"] = "CartPole-v1"
    with pytest.raises(ConfigError, match="agent 'sac' takes continuous .* CartPole-v1 has Discrete"):
        rlkit.train(data, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_prioritized_replay_needs_priority_feedback():
    data = _config("sac", 100)
    data["train"]["replay"]["prioritized"] = True
    _refused(data, "returns no TD errors")
    data = _config("dqn", 100)
    data["train"]["replay"]["prioritized"] = True
    assert build_run_config(data).train.replay.prioritized  # DQN declares priority_feedback
    data["offline"] = {"dataset": "rlkit/contract-v0"}
    _refused(data, "not supported offline")


def test_sample_hook_agents_are_refused_where_the_source_cannot_run_the_hook():
    data = _config("ris", 100)
    data["offline"] = {"dataset": "rlkit/contract-v0"}
    del data["train"]["replay"]["her"]
    _refused(data, "sample-time hook")


def test_offline_only_agents_refuse_online_configs():
    data = _config("bc", 100)
    del data["offline"]
    _refused(data, "agent 'bc' learns from a dataset, and this config has no offline: section")


def test_env_step_schedules_are_refused_offline():
    data = _config("bc", 100)
    data["agent"] = {"name": "dqn", "lr_end": 1e-4, "lr_decay_steps": 1000}
    _refused(data, "agent.lr_decay_steps is a schedule over env steps")
    data["agent"]["lr_decay_steps"] = 0
    build_run_config(data)


def test_sequence_agents_refuse_transition_hooks(monkeypatch):
    class SequenceDQN(DQN):
        capabilities = Capabilities(experience="sequences")

    monkeypatch.setitem(AGENTS, "dqn", (DQNConfig, SequenceDQN))
    data = _config("dqn", 100)
    data["train"]["replay"]["her"] = {"strategy": "future"}
    _refused(data, "learns from sequences")
    data = _config("dqn", 100, aux=AUX)
    data["train"]["replay"]["n_step"] = 1
    _refused(data, "learns from transitions, but agent 'dqn' learns from sequences")


def test_aux_needing_one_step_transitions_refuses_n_step():
    data = _config("dqn", 100, aux=AUX)
    data["train"]["replay"]["n_step"] = 3
    _refused(data, r"one-step transitions .* train.replay.n_step is 3")


def test_aux_config_errors_are_one_line():
    _refused(_config("dqn", 100, aux=[{"name": "inverse_dynamic"}]), "Did you mean 'inverse_dynamics'")
    _refused(_config("dqn", 100, aux=[{"name": "inverse_dynamics", "wieght": 1}]), "agent.aux\\[0\\].wieght")
    _refused(_config("dqn", 100, aux=[{"name": "inverse_dynamics", "weight": -1}]), "weight")


@pytest.mark.parametrize("agent_name,fields,match", [
    ("dqn", {"aux": [{"name": "inverse_dynamics", "part": "policy"}]}, "has no module part 'policy'"),
    ("dqn", {"aux": [{"name": "inverse_dynamics", "part": "target_net"}]}, "no optimizer of DQN trains 'target_net'"),
    ("dqn", {"aux": AUX}, "which has no trainable parameters .* set agent.encoder_hidden"),
    ("sac", {"aux": [{"name": "inverse_dynamics", "part": "critic"}]}, "does not map a batch of observations"),
    ("dqn", {"freeze": ["encoderr"]}, "has no module part 'encoderr'"),
])
def test_parts_named_in_the_config_must_exist(agent_name, fields, match, tmp_path):
    cfg = build_run_config(_config(agent_name, 100, **fields))
    with pytest.raises(ConfigError, match=match):
        build_agent(cfg, *run_spaces(cfg), torch.device("cpu"))
    with pytest.raises(ConfigError, match=match) as info:  # a run fails before its directory appears
        rlkit.train(_config(agent_name, 100, **fields), run_dir=tmp_path / "run")
    assert "\n" not in str(info.value) and not (tmp_path / "run").exists()


@pytest.mark.parametrize("agent_name,frozen,moving", [
    ("dqn", "q_net.encoder", "q_net.q"),
    ("sac", "critic.encoder", "critic.layers"),        # SAC's policy loss lifts the critic's flags and restores them
    ("sac", "policy", "critic"),                       # a whole part: its optimizer's step is skipped
    ("mpo", "encoder", "critic"),
    ("bc", "policy.encoder", "policy.net"),
    ("ris", "critic.layers.0", "critic.layers.1"),     # RIS's policy loss does the same through its critic
])
def test_frozen_part_does_not_move(agent_name, frozen, moving, contract_dataset):
    extra = {} if agent_name == "ris" else {"encoder_hidden": [16]}
    cfg = build_run_config(_config(agent_name, 100, freeze=[frozen], **extra))
    agent = build_agent(cfg, *run_spaces(cfg), torch.device("cpu"))
    before = [p.detach().clone() for p in agent.parts.module_at(frozen).parameters()]
    others = [p.detach().clone() for p in agent.parts.module_at(moving).parameters()]
    buffer = _transitions(agent, cfg, 200)
    for _ in range(5):
        agent.update(buffer.sample(32))
    for p, q in zip(agent.parts.module_at(frozen).parameters(), before):
        assert not p.requires_grad
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert any(not torch.equal(p, q) for p, q in zip(agent.parts.module_at(moving).parameters(), others))


# --------------------------------------------------------------------------------------
# The declaration and the step record
# --------------------------------------------------------------------------------------


class _Toy(Agent):
    def __init__(self, undeclared: bool = False, target_with_grad: bool = False) -> None:
        space = gym.spaces.Box(-1, 1, (3,), np.float32)
        super().__init__(DQNConfig(), space, gym.spaces.Discrete(2))
        self.net, self.other, self.target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
        if not target_with_grad:
            self.target.requires_grad_(False)
        params = [*self.net.parameters(), *(self.other.parameters() if undeclared else ())]
        self.opt = torch.optim.Adam(params)
        self.declare(parts={"net": acting(self.net), "target": target_of("net", self.target)},
                     optimizers={"optimizer": trains(self.opt, "net")})


class _ToyWithoutHook(_Toy):
    capabilities = Capabilities(sample_hook=True)


def test_declaration_is_checked():
    _Toy()
    with pytest.raises(DeclarationError, match="make_sample_hook is not overridden"):
        _ToyWithoutHook()
    with pytest.raises(DeclarationError, match="holds a parameter of no part"):
        _Toy(undeclared=True)
    with pytest.raises(DeclarationError, match="'target' is a target copy but has trainable parameters"):
        _Toy(target_with_grad=True)


def test_state_dict_holds_every_declared_part_and_loads_strictly():
    cfg = build_run_config(_config("sac", 100))
    agent = build_agent(cfg, *run_spaces(cfg), torch.device("cpu"))
    state = agent.state_dict()
    assert set(state) == {"policy", "critic", "target_critic", "log_alpha", "actor_optimizer", "critic_optimizer",
                          "alpha_optimizer", "rng", "generator", "env_steps", "updates"}
    broken = dict(state)
    del broken["target_critic"]
    with pytest.raises(KeyError):
        build_agent(cfg, *run_spaces(cfg), torch.device("cpu")).load_state_dict(broken)
    with pytest.raises(KeyError, match="does not declare: aux.inverse_dynamics"):  # e.g. a checkpoint with an aux head
        build_agent(cfg, *run_spaces(cfg), torch.device("cpu")).load_state_dict({**state, "aux.inverse_dynamics": {}})


def test_parameter_free_parts_missing_from_older_checkpoints_load():
    cfg = build_run_config(_config("mpo", 100))
    agent = build_agent(cfg, *run_spaces(cfg), torch.device("cpu"))
    state = agent.state_dict()
    del state["encoder"]  # MPO checkpoints from before the contract did not list its flattening encoder
    build_agent(cfg, *run_spaces(cfg), torch.device("cpu")).load_state_dict(state)


def test_step_record_carries_prev_reward_ids_and_masks_and_checks_shapes():
    step = StepRecord.from_arrays(np.zeros((3, 4), np.float32), "cpu", prev_reward=[1.0, 0.0, 2.0],
                                  episode_start=[False, True, False], agent_id=[0, 1, 0],
                                  action_mask=np.ones((3, 2), bool))
    assert step.size == 3 and step.prev_reward.dtype == torch.float32 and step.agent_id.dtype == torch.int64
    with pytest.raises(ValueError, match="do not match"):
        StepRecord.from_arrays(np.zeros((3, 4), np.float32), "cpu", prev_reward=[1.0, 0.0])


@pytest.mark.parametrize("agent_name", ["dqn", "mpo", "sac"])
def test_wrap_trainable_keeps_checkpoints_and_targets_on_the_modules(agent_name):
    # target updates every other update: hard copies (DQN tau 1, MPO) and Polyak averages (SAC) across the wrapper
    cfg = build_run_config(_config(agent_name, 100, target_update_every=2))
    agent = build_agent(cfg, *run_spaces(cfg), torch.device("cpu"))
    reference = build_agent(cfg, *run_spaces(cfg), torch.device("cpu"))
    reference.load_state_dict(agent.state_dict())

    class Wrapper(torch.nn.Module):  # stands in for DDP / torch.compile: prefixes the state dict's keys
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args):
            return self.module(*args)

    agent.wrap_trainable(Wrapper)
    trained = [n for n, role in agent.parts.roles.items() if role in ("acts", "trains")]
    targets = [n for n, role in agent.parts.roles.items() if role == "target"]
    assert all(isinstance(getattr(agent, n), Wrapper) for n in trained)
    assert targets and not any(isinstance(getattr(agent, n), Wrapper) for n in targets)
    buffer = _transitions(agent, cfg, 200)
    for i in range(5):
        torch.manual_seed(i)
        batch = buffer.sample(32)
        agent.update(batch)
        reference.update(batch)
    got, expected = agent.state_dict(), reference.state_dict()
    for name in trained + targets:
        assert got[name].keys() == expected[name].keys()
        for key, value in expected[name].items():
            torch.testing.assert_close(got[name][key], value, rtol=0, atol=0)


def test_ddp_wrapping_trains_in_a_one_process_group(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        cfg = build_run_config(_config("sac", 100, encoder_hidden=[16], aux=AUX))  # aux heads average by hand
        agent = build_agent(cfg, *run_spaces(cfg), torch.device("cpu"))
        agent.wrap_ddp()
        assert type(agent.critic).__name__ == "DistributedDataParallel"
        buffer = _transitions(agent, cfg, 200)
        for _ in range(3):
            metrics = agent.update(buffer.sample(32))
        assert np.isfinite(float(metrics["critic_loss"])) and np.isfinite(float(metrics["aux/inverse_dynamics"]))
        assert not any(k.startswith("module.") for k in agent.state_dict()["critic"])
        del agent
    finally:
        import gc

        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


@pytest.mark.slow  # ~16 s: inductor compiles the Q-network's forward and backward on the CPU
def test_compiled_agent_trains_like_the_eager_one():
    cfg = build_run_config(_config("dqn", 100, max_grad_norm=None))
    compiled = build_agent(cfg, *run_spaces(cfg), torch.device("cpu"))
    eager = build_agent(cfg, *run_spaces(cfg), torch.device("cpu"))
    eager.load_state_dict(compiled.state_dict())
    compiled.compile()
    assert type(compiled.q_net).__name__ == "OptimizedModule"
    buffer = _transitions(compiled, cfg, 200)
    for i in range(3):
        torch.manual_seed(i)
        batch = buffer.sample(32)
        assert float(compiled.update(batch)["loss"]) == pytest.approx(float(eager.update(batch)["loss"]), rel=1e-5)
    assert compiled.state_dict()["q_net"].keys() == eager.state_dict()["q_net"].keys()
