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
