"""High-level policies over a frozen motor skill's z (issue 23; envs/skill_actions.py): the action space is z's,
the env receives decoder(proprio, z), the decoder's weights are unchanged after high-level training, bad skills
are refused in one line, and the wrapped task passes Gymnasium's and SB3's checkers."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

import rlkit.envs  # noqa: F401  (registers the task ids)
from rlkit.agents import npmp
from rlkit.agents.npmp import Decoder, load_skill
from rlkit.envs.skill_actions import SKILL_IDS, SkillActionWrapper, make_skill_env
from rlkit.errors import ConfigError

GOTO = "rlkit-skill/HumanoidGoToTarget-v0"
LATENT = 6


def write_skill(path: Path, proprio_dim: int = 116, action_dim: int = 28, action_mode: str = "pd") -> Path:
    """A small exported NPMP as `rlkit export` writes one: config.yaml (the npmp agent section, its env) and
    model.safetensors with the decoder's tensors under ``decoder.*`` (random weights, standardiser set)."""
    torch.manual_seed(0)
    decoder = Decoder(proprio_dim, LATENT, action_dim, [16], "tanh", True, True)
    decoder.proprio_mean.uniform_(-0.5, 0.5)
    decoder.proprio_std.uniform_(0.5, 2.0)
    path.mkdir(parents=True, exist_ok=True)
    save_file({f"decoder.{k}": v.contiguous() for k, v in decoder.state_dict().items()}, str(path / "model.safetensors"))
    config = {"env": {"id": "rlkit/HumanoidImitation-v0", "kwargs": {"action_mode": action_mode}},
              "agent": {"name": "npmp", "latent_dim": LATENT, "posterior_hidden": [16], "decoder_hidden": [16],
                        "proprio_dim": proprio_dim}}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def skill(tmp_path_factory) -> Path:
    return write_skill(tmp_path_factory.mktemp("skill") / "npmp")


def test_action_space_is_z_and_the_env_gets_the_decoded_pd_targets(skill):
    env = gym.make(GOTO, skill=str(skill), z_bound=2.5)
    assert set(SKILL_IDS) == {GOTO, "rlkit-skill/HumanoidCarry-v0"}
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (LATENT,), np.float32)  # u; z = z_bound * u
    wrapper = env.get_wrapper_attr("decode").__self__
    assert isinstance(wrapper, SkillActionWrapper) and env.unwrapped.action_mode == "pd"
    obs, _ = env.reset(seed=3)
    decoder, _ = load_skill(skill)
    u = np.array([0.3, -0.4, 0.8, 3.0, -3.0, 0.0], dtype=np.float32)  # two entries beyond the Box: clipped
    z = np.array([0.75, -1.0, 2.0, 2.5, -2.5, 0.0], dtype=np.float32)
    np.testing.assert_allclose(wrapper.latent(u), z, rtol=1e-6)
    expected = decoder(torch.as_tensor(obs["proprio"])[None], torch.as_tensor(z)[None])[0]
    sent = wrapper.decode(u)
    assert sent.shape == (28,) and sent.dtype == np.float32
    np.testing.assert_allclose(sent, expected.numpy(), atol=1e-6)  # the task's PD Box is [-1, 1]^28

    # the same z from the same state steps the task exactly as the decoded action does on the bare env
    bare = gym.make("rlkit/HumanoidGoToTarget-v0", action_mode="pd")
    bare.reset(seed=3)
    after_bare, *_ = bare.step(sent)
    after, *_ = env.step(u)
    np.testing.assert_array_equal(after["proprio"], after_bare["proprio"])
    env.close(), bare.close()


def test_the_wrapped_task_passes_both_checkers(skill):
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    benign = re.compile(r"is different from the unwrapped version|Box observation space (minimum|maximum) value is "
                        r"-?infinity|precision lowered")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = gym.make(GOTO, skill=str(skill))
        gym_check(env, skip_render_check=True)
        sb3_check(gym.make(GOTO, skill=str(skill)), warn=True)
    unexpected = [str(w.message) for w in caught if not benign.search(str(w.message))]
    assert not unexpected, unexpected


def test_decoder_is_frozen_and_unchanged_after_high_level_training(skill, tmp_path, monkeypatch):
    """MPO over z trains through rlkit's loop (updates run); every decoder the envs loaded keeps
    requires_grad False and the exported weights, bit for bit."""
    loaded: list[Decoder] = []

    def recording_load_skill(path, device="cpu"):
        decoder, spec = load_skill(path, device)
        loaded.append(decoder)
        return decoder, spec

    monkeypatch.setattr(npmp, "load_skill", recording_load_skill)
    run = rlkit_train_small(skill, tmp_path / "run", "mpo", ["agent.policy_hidden=[32]", "agent.critic_hidden=[32]",
                                                             "agent.num_samples=4"])
    updates = [r for r in run.metrics("train") if "critic_loss" in r or "policy_loss" in r]
    assert updates, "no MPO update was logged: the high level did not train"
    assert len(loaded) >= 2  # the training env and the evaluation env
    with torch.no_grad():
        reference, _ = load_skill(skill)
    for decoder in loaded:
        assert not decoder.training and not any(p.requires_grad for p in decoder.parameters())
        for (name, value), (_, ref) in zip(decoder.state_dict().items(), reference.state_dict().items()):
            assert torch.equal(value, ref), f"decoder tensor {name} changed during high-level training"
    assert run.agent.action_space.shape == (LATENT,)  # the high-level policy acts in z


def test_sac_trains_over_z_too(skill, tmp_path):
    run = rlkit_train_small(skill, tmp_path / "sac", "sac", ["agent.actor_hidden=[32]", "agent.critic_hidden=[32]"])
    assert run.agent.action_space == gym.spaces.Box(-1.0, 1.0, (LATENT,), np.float32)
    assert run.summary["steps"] == 60


def test_vision_guided_mpo_over_z_trains_its_image_encoder_with_curl_attached(skill, tmp_path, monkeypatch):
    """The paper's high level is vision-guided: the task env's head-camera image (pixels=True) goes through the
    high-level agent's `encoder` part (a CNN for the image key), which the critic's loss and an attached
    auxiliary module (CURL, shifting the image only) train; the wrapped task with pixels passes both checkers."""
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gym_check(gym.make(GOTO, skill=str(skill), pixels=True), skip_render_check=True)
        sb3_check(gym.make(GOTO, skill=str(skill), pixels=True), warn=False)
    from rlkit.agents import mpo

    initial: list[list[torch.Tensor]] = []  # the encoder's weights as each MPO agent was built
    build = mpo.MPO.__init__

    def recording_init(self, *args, **kwargs):
        build(self, *args, **kwargs)
        initial.append([p.detach().clone() for p in self.encoder.parameters()])

    monkeypatch.setattr(mpo.MPO, "__init__", recording_init)
    run = rlkit_train_small(skill, tmp_path / "vision", "mpo",
                            ["agent.policy_hidden=[16]", "agent.critic_hidden=[16]", "agent.num_samples=4",
                             "agent.aux=[{name: curl, weight: 1.0}]"], pixels=True)
    agent = run.agent.agent
    encoder = agent.parts.module_at("encoder")
    assert set(encoder.cnns) == {"pixels"} and encoder.vector_keys == ["proprio", "task"]
    moved = [not torch.equal(a, b) for a, b in zip(encoder.parameters(), initial[0])]
    assert all(moved), "the image encoder did not learn"
    updates = [r for r in run.metrics("train") if "aux/curl" in r]
    assert updates and all(np.isfinite(r["aux/curl"]) for r in updates)


def rlkit_train_small(skill: Path, run_dir: Path, agent: str, extra: list[str], pixels: bool = False):
    import rlkit

    return rlkit.train({"seed": 0, "torch_threads": 1, "device": "cpu",
                        "env": {"id": f"rlkit.envs.skill_actions:{GOTO}",
                                "kwargs": {"skill": str(skill), "reward_type": "shaped", "max_episode_steps": 30,
                                           **({"pixels": True} if pixels else {})}},
                        "agent": {"name": agent},
                        "train": {"total_steps": 60, "learning_starts": 20, "batch_size": 8, "eval_every": 60,
                                  "eval_episodes": 1, "checkpoint_every": 60, "replay": {"capacity": 1000}},
                        "log": {"log_every": 20}},
                       run_dir=run_dir, overrides=extra)


def test_bad_skills_are_refused_in_one_line(skill, tmp_path):
    with pytest.raises(ConfigError, match="does not exist.*rlkit export"):
        gym.make(GOTO, skill=str(tmp_path / "no_such_skill"))
    with pytest.raises(ConfigError, match="env.kwargs.skill is missing"):
        gym.make(GOTO)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)  # a training run, not an export
    with pytest.raises(ConfigError, match="export it first"):
        make_skill_env("rlkit/HumanoidGoToTarget-v0", skill=str(tmp_path / "run"))
    small = write_skill(tmp_path / "small", proprio_dim=100)
    with pytest.raises(ConfigError, match="reads 100 proprioceptive entries, the env's 'proprio' has 116"):
        gym.make(GOTO, skill=str(small))
    with pytest.raises(ConfigError, match="outputs action_mode 'pd' actions, the env takes 'torque'"):
        gym.make(GOTO, skill=str(skill), action_mode="torque")
    with pytest.raises(ConfigError, match="z_bound must be a positive number"):
        gym.make(GOTO, skill=str(skill), z_bound=0)
    with pytest.raises(ConfigError, match="reads the observation's 'proprio' entry"):
        SkillActionWrapper(gym.make("Pendulum-v1"), skill)


def test_cli_bad_skill_path_exits_2(tmp_path, capsys):
    from rlkit.cli import main
    from rlkit.config import configs_dir

    code = main(["train", str(configs_dir() / "mpo_humanoid_goto_skill.yaml"), f"env.kwargs.skill={tmp_path / 'missing'}",
                 f"--run-dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and "rlkit export" in err
    assert not (tmp_path / "run").exists()  # refused before the run directory is made


@pytest.mark.parametrize("config", ["mpo_humanoid_goto_skill", "sac_humanoid_goto_skill", "mpo_humanoid_carry_skill",
                                    "sac_humanoid_carry_skill"])
def test_shipped_high_level_configs_train_over_z(config, skill, tmp_path):
    """Each shipped high-level config (MPO and SAC, go-to and carry) trains over z as written, only its budget
    and network sizes cut down: the action is z's Box and updates run."""
    import rlkit
    from rlkit.config import configs_dir

    small = {"mpo": ["agent.policy_hidden=[16]", "agent.critic_hidden=[16]", "agent.num_samples=4"],
             "sac": ["agent.actor_hidden=[16]", "agent.critic_hidden=[16]", "agent.random_steps=20"]}[config[:3]]
    run = rlkit.train(str(configs_dir() / f"{config}.yaml"), run_dir=tmp_path / config, overrides=[
        f"env.kwargs.skill={skill}", "env.kwargs.max_episode_steps=30", "train.total_steps=50",
        "train.learning_starts=20", "train.batch_size=8", "train.eval_every=50", "train.eval_episodes=1",
        "train.checkpoint_every=50", "train.replay.capacity=1000", "log.log_every=10", "log.progress=false",
        "device=cpu", *small])
    assert run.agent.action_space.shape == (LATENT,)
    assert [r for r in run.metrics("train") if "critic_loss" in r], "no update was logged"
    assert run.summary["steps"] == 50
