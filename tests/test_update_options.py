"""``train.precision`` (bf16 autocast around each update) and ``train.compile`` (``torch.compile`` of the trained
parts): what reaches the update, what checkpoints hold, and the refused and resumable settings."""

import pytest
import torch

from rlkit.config import configs_dir, load_config
from rlkit.errors import ConfigError
from rlkit.runfiles.checkpoint import load_checkpoint
from rlkit.training import loops

QUICK = ["train.total_steps=300", "train.learning_starts=100", "train.eval_every=0", "train.checkpoint_every=0",
         "log.progress=false", "log.tensorboard=false", "log.plot=false", "train.batch_size=16"]


def _dqn_update_spy(monkeypatch):
    from rlkit.agents.dqn import DQN

    seen = []
    update = DQN.update

    def spy(self, batch):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return update(self, batch)

    monkeypatch.setattr(DQN, "update", spy)
    return seen


@pytest.mark.parametrize("precision, autocast", [("fp32", False), ("bf16", True)])
def test_precision_sets_autocast_around_every_update(tmp_path, monkeypatch, precision, autocast):
    seen = _dqn_update_spy(monkeypatch)
    cfg = load_config(str(configs_dir() / "dqn_cartpole.yaml"), [*QUICK, f"train.precision={precision}", "device=cpu"])
    loops.train_online(cfg, tmp_path / "run")
    assert seen and all(enabled == autocast for enabled, _ in seen)
    if autocast:
        assert all(dtype == torch.bfloat16 for _, dtype in seen)


def test_compile_wraps_the_trained_parts_and_checkpoints_keep_plain_names(tmp_path, monkeypatch):
    compiled = []
    real_compile = torch.compile

    def eager_compile(module, **kwargs):  # the wiring, without inductor's minutes of code generation
        compiled.append(type(module).__name__)
        return real_compile(module, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    cfg = load_config(str(configs_dir() / "dqn_cartpole.yaml"), [*QUICK, "train.compile=true", "device=cpu"])
    loops.train_online(cfg, tmp_path / "compiled")
    assert compiled, "train.compile=true compiled nothing"
    plain = load_config(str(configs_dir() / "dqn_cartpole.yaml"), [*QUICK, "device=cpu"])
    loops.train_online(plain, tmp_path / "plain")
    a = load_checkpoint(tmp_path / "compiled" / "checkpoints" / "latest.pt")
    b = load_checkpoint(tmp_path / "plain" / "checkpoints" / "latest.pt")
    keys = lambda ckpt: sorted(k for k in _flatten_keys(ckpt))  # noqa: E731
    assert keys(a) == keys(b) and not any("_orig_mod" in k for k in keys(a))


def _flatten_keys(tree, prefix=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _flatten_keys(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix


def test_options_refused_for_sb3_and_checked():
    with pytest.raises(ConfigError, match="SB3 agents"):
        load_config(str(configs_dir() / "sb3_ppo_cartpole.yaml"), ["train.compile=true"])
    with pytest.raises(ConfigError, match="precision"):
        load_config(str(configs_dir() / "dqn_cartpole.yaml"), ["train.precision=fp16"])


def _cartpole_dqn():
    import gymnasium as gym

    from rlkit.training.build import build_agent

    cfg = load_config(str(configs_dir() / "dqn_cartpole.yaml"), ["device=cpu"])
    env = gym.make("CartPole-v1")
    return build_agent(cfg, env.observation_space, env.action_space, torch.device("cpu"))


def test_wrappers_stack_so_compile_after_ddp_keeps_ddp():
    """torchrun + train.compile: compile must wrap the DDP-wrapped part, not replace it by the plain module."""
    agent = _cartpole_dqn()
    plain = agent.parts.modules["q_net"]

    class First(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

    class Second(First):
        pass

    agent.wrap_trainable(First)
    agent.wrap_trainable(Second)
    assert isinstance(agent.q_net, Second) and isinstance(agent.q_net.inner, First) and agent.q_net.inner.inner is plain
    assert agent.parts.modules["q_net"] is plain  # checkpoints and targets still read the plain module


def test_forward_after_an_optimizer_step_inside_bf16_autocast_sees_the_new_weights():
    """Autocast caches bf16 weight copies for its whole context; an update that steps one network and then runs it
    again (RIS: the critic after its step) must not read the old copy."""
    agent = _cartpole_dqn()
    x = torch.randn(32, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        before = agent.q_net(x).float()
        loss = (agent.q_net(x).float() - 100.0).pow(2).mean()
        agent.optimize("q_net", loss) if "q_net" in agent.parts.optimizers else agent.optimize(
            next(iter(agent.parts.optimizers)), loss)
        after = agent.q_net(x).float()
    assert not torch.equal(before, after)


def test_gather_batches_feeds_every_due_update_from_fewer_draws(tmp_path, monkeypatch):
    """train.gather_batches: the updates due in a phase are fed from draws of up to that many batches (views of
    one gather), every update gets a batch of train.batch_size, and their number is unchanged; refused with PER,
    and may change on resume (tests/test_replay.py checks the batches themselves)."""
    from rlkit.experience.replay import ReplayBuffer

    sizes, draws = [], []
    sample, sample_batches = ReplayBuffer.sample, ReplayBuffer.sample_batches
    monkeypatch.setattr(ReplayBuffer, "sample", lambda self, n, beta=0.4: (draws.append(n), sample(self, n, beta))[1])
    monkeypatch.setattr(ReplayBuffer, "sample_batches",
                        lambda self, n, k, beta=0.4: (draws.append(("many", n, k)), sample_batches(self, n, k, beta))[1])
    seen = _dqn_update_spy(monkeypatch)
    from rlkit.agents.dqn import DQN

    update = DQN.update
    monkeypatch.setattr(DQN, "update", lambda self, batch: (sizes.append(len(batch.rewards)), update(self, batch))[1])
    overrides = [*QUICK, "device=cpu", "train.train_every=10", "train.gradient_steps=5"]
    for gather, expected_draws in [(1, None), (4, [("many", 16, 4), 16])]:
        sizes.clear(), draws.clear(), seen.clear()
        cfg = load_config(str(configs_dir() / "dqn_cartpole.yaml"), [*overrides, f"train.gather_batches={gather}"])
        loops.train_online(cfg, tmp_path / f"run{gather}")
        assert len(sizes) == 21 * 5 and set(sizes) == {16}  # phases at steps 100, 110, ..., 300: 5 updates each
        if expected_draws is not None:  # 5 due: a draw of 4 batches, then one of 1 (sampled as 16 rows)
            assert [d for d in draws if d != 16 * 4][:2] == expected_draws
    with pytest.raises(ConfigError, match="gather_batches=4 .* prioritized replay"):
        load_config(str(configs_dir() / "dqn_cartpole.yaml"), ["train.gather_batches=4", "train.replay.prioritized=true"])
    with pytest.raises(ConfigError, match="train.gather_batches must be >= 1"):
        load_config(str(configs_dir() / "dqn_cartpole.yaml"), ["train.gather_batches=0"])
    from rlkit.training.run_state import RESUMABLE_KEYS

    assert "train.gather_batches" in RESUMABLE_KEYS
