"""Self-supervised modules of issue 21 (InfoNCE, CURL, CPC, CLAPP, Mean Teacher, DrQ) and the pixel envs."""

from __future__ import annotations

import dataclasses

import warnings

import gymnasium as gym
import numpy as np
import pytest

import rlkit.envs  # noqa: F401  (registers the rlkit/... ids)


# ---------------------------------------------------------------------------------- pixel envs
@pytest.mark.parametrize("env_id", ["rlkit/PixelCartPole-v0", "rlkit/PixelPendulum-v0"])
def test_pixel_env_passes_gymnasium_and_sb3_checks(env_id: str) -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8
    assert info["state"].dtype == np.float32 and info["state"].shape == env.unwrapped.observation_space.shape
    obs2, _, _, _, info2 = env.step(env.action_space.sample())
    assert (obs2[:2] == obs[1:]).all()  # the stack shifts by one frame
    assert "state" in info2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env)
        sb3_check_env(gym.make(env_id))


def test_pixel_observation_is_exported_and_refuses_human_rendering() -> None:
    from rlkit.envs.wrappers import PixelObservation

    with pytest.raises(ValueError, match="rgb_array"):
        PixelObservation(gym.make("CartPole-v1"))
    env = PixelObservation(gym.make("CartPole-v1", render_mode="rgb_array"), size=32, frame_stack=2, grey=False)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (6, 32, 32)


# ---------------------------------------------------------------------------------- helpers
import json  # noqa: E402
import math  # noqa: E402

import torch  # noqa: E402

import rlkit  # noqa: E402
from rlkit.agents import AGENTS  # noqa: E402
from rlkit.auxiliary import AUX_MODULES  # noqa: E402
from rlkit.auxiliary.clapp import encoder_blocks  # noqa: E402
from rlkit.auxiliary.infonce import info_nce, similarities  # noqa: E402
from rlkit.auxiliary.mean_teacher import consistency_loss  # noqa: E402
from rlkit.config import build_run_config  # noqa: E402
from rlkit.errors import ConfigError  # noqa: E402
from rlkit.experience.replay import Transitions  # noqa: E402
from rlkit.experience.sequences import Sequences  # noqa: E402

SSL = ["curl", "cpc", "clapp", "mean_teacher"]
PIXELS = gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)
VECTOR = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
DISCRETE, BOX = gym.spaces.Discrete(2), gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
GOALS = gym.spaces.Dict({"observation": gym.spaces.Box(-1.0, 1.0, (4,), np.float32),
                         "achieved_goal": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
                         "desired_goal": gym.spaces.Box(-1.0, 1.0, (2,), np.float32)})
# a vision-guided task's observation (rlkit/HumanoidGoToTarget-v0 with pixels=True, in small)
VISION = gym.spaces.Dict({"pixels": gym.spaces.Box(0, 255, (3, 64, 64), np.uint8),
                          "proprio": gym.spaces.Box(-np.inf, np.inf, (5,), np.float32),
                          "task": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)})


def _aux(name: str, **fields):
    return AUX_MODULES[name](name=name, weight=1.0, **fields)


def _build(agent: str, obs_space: gym.Space, act_space: gym.Space, aux: list, **fields):
    config_cls, agent_cls = AGENTS[agent]
    torch.manual_seed(0)
    return agent_cls(config_cls(aux=aux, **fields), obs_space, act_space, "cpu", 0)


def _sample(space: gym.Space, n: int, seed: int) -> torch.Tensor | dict[str, torch.Tensor]:
    space.seed(seed)
    draws = [space.sample() for _ in range(n)]
    if isinstance(space, gym.spaces.Dict):
        return {key: torch.as_tensor(np.stack([d[key] for d in draws])) for key in space.spaces}
    return torch.as_tensor(np.stack(draws))


def _transitions(obs_space: gym.Space, act_space: gym.Space, n: int = 16, seed: int = 0) -> Transitions:
    return Transitions(obs=_sample(obs_space, n, seed), actions=_sample(act_space, n, seed + 1),
                       rewards=torch.rand(n), next_obs=_sample(obs_space, n, seed + 2),
                       discounts=torch.full((n,), 0.99), weights=torch.ones(n), indices=torch.arange(n))


def _sequences(obs_space: gym.Space, act_space: gym.Space, n: int = 8, length: int = 5) -> Sequences:
    flat = _sample(obs_space, n * length, 0)
    obs = ({key: value.reshape(n, length, *value.shape[1:]) for key, value in flat.items()} if isinstance(flat, dict)
           else flat.reshape(n, length, *obs_space.shape))
    actions = _sample(act_space, n * length, 1).reshape(n, length, *act_space.shape)
    mask = torch.ones(n, length, dtype=torch.bool)
    mask[0, :2] = False  # one window with left padding
    return Sequences(obs=obs, actions=actions, rewards=torch.rand(n, length), returns_to_go=torch.rand(n, length),
                     timesteps=torch.arange(length).repeat(n, 1), terminated=torch.zeros(n, length, dtype=torch.bool),
                     mask=mask)


# ---------------------------------------------------------------------------------- InfoNCE
def test_info_nce_on_hand_built_similarities() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # S = I: each row's positive scores 1, its negative 0 -> -log(e / (e + 1)) = log(1 + e^-1)
    assert math.isclose(float(info_nce(q, q)), math.log(1 + math.exp(-1)), rel_tol=1e-6)
    # temperature 0.5 doubles the logits, as a bilinear W = 2 I does
    assert math.isclose(float(info_nce(q, q, temperature=0.5)), math.log(1 + math.exp(-2)), rel_tol=1e-6)
    assert math.isclose(float(info_nce(q, q, weight=2 * torch.eye(2))), math.log(1 + math.exp(-2)), rel_tol=1e-6)
    # keys swapped: the positives score 0, the negatives 1
    assert math.isclose(float(info_nce(q, q.flip(0))), math.log(1 + math.exp(1)), rel_tol=1e-6)
    # a 3 x 3 case against a hand-written log-softmax
    qs, ks = torch.tensor([[1.0, 2.0], [0.5, -1.0], [0.0, 3.0]]), torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    W = torch.tensor([[1.0, 0.5], [0.0, 2.0]])
    S = [[sum(qs[i, a] * W[a, b] * ks[j, b] for a in range(2) for b in range(2)) for j in range(3)] for i in range(3)]
    expected = -sum(S[i][i] - math.log(sum(math.exp(S[i][j]) for j in range(3))) for i in range(3)) / 3
    torch.testing.assert_close(similarities(qs, ks, 1.0, W), torch.tensor(S))
    assert math.isclose(float(info_nce(qs, ks, weight=W)), float(expected), rel_tol=1e-5)


# ---------------------------------------------------------------------------------- momentum parts
def test_curl_key_encoder_is_a_declared_momentum_part_updated_after_each_step() -> None:
    agent = _build("dqn", PIXELS, DISCRETE, [_aux("curl")])
    parts = agent.parts
    assert parts.roles["aux.curl.key_encoder"] == "momentum" and parts.sources["aux.curl.key_encoder"] == "q_net.encoder"
    key = parts.modules["aux.curl.key_encoder"]
    encoder = parts.module_at("q_net.encoder")
    assert not any(p.requires_grad for p in key.parameters())
    assert "aux.curl.key_encoder" in agent.state_dict()
    assert all(k.split(".", 1)[0] == "q_net" for k in agent.acting_tensors())  # export: acting parts only
    for p, q in zip(key.parameters(), encoder.parameters()):  # starts as a copy
        assert torch.equal(p, q)
    with torch.no_grad():  # make the copy differ, so the EMA is visible
        for p in key.parameters():
            p.add_(1.0)
    before = [p.clone() for p in key.parameters()]
    agent.update(_transitions(PIXELS, DISCRETE))
    for old, new, source in zip(before, key.parameters(), encoder.parameters()):  # k <- tau q + (1 - tau) k
        torch.testing.assert_close(new, 0.05 * source + 0.95 * old, rtol=1e-5, atol=1e-6)


def test_momentum_of_rejects_tau_outside_unit_interval() -> None:
    from rlkit.contract.parts import DeclarationError, momentum_of

    with pytest.raises(DeclarationError, match="tau"):
        momentum_of("encoder", torch.nn.Linear(1, 1), tau=1.5)


# ---------------------------------------------------------------------------------- CLAPP locality
def test_clapp_blocks_of_the_nature_cnn_and_no_gradient_crosses_a_block() -> None:
    agent = _build("dqn", PIXELS, DISCRETE, [_aux("clapp")])
    module = agent.aux_modules["clapp"]
    encoder = agent.parts.module_at("q_net.encoder")
    blocks = encoder_blocks(encoder)
    assert len(blocks) == 4 and len(module.W) == 4  # three convolutions and the linear layer
    assert [tuple(W.shape) for W in module.W] == [(32, 32), (64, 64), (64, 64), (512, 512)]
    batch = _transitions(PIXELS, DISCRETE)
    losses = module.layer_losses(batch.obs, batch.next_obs, agent)
    params = [list(block.parameters()) for block in blocks]
    for l, loss in enumerate(losses):
        grads = torch.autograd.grad(loss, [p for ps in params for p in ps] + list(module.W), allow_unused=True)
        block_grads, W_grads = grads[:sum(map(len, params))], grads[sum(map(len, params)):]
        i = 0
        for m, ps in enumerate(params):
            for g in block_grads[i:i + len(ps)]:
                if m == l:
                    assert g is not None and bool(g.abs().sum() > 0), f"block {l} gets no gradient from its loss"
                else:
                    assert g is None or bool((g == 0).all()), f"loss {l} reaches block {m}"
            i += len(ps)
        assert [g is not None for g in W_grads] == [m == l for m in range(len(losses))]


def test_clapp_blocks_of_an_mlp_encoder() -> None:
    agent = _build("sac", VECTOR, BOX, [_aux("clapp")], encoder_hidden=[16, 8], actor_hidden=[8], critic_hidden=[8])
    assert [tuple(W.shape) for W in agent.aux_modules["clapp"].W] == [(16, 16), (8, 8)]


def test_clapp_on_a_vision_observation_learns_the_image_network_block_by_block() -> None:
    """A Dict of pixels and vectors: CLAPP's blocks are the image network's, run on the image key; with an MLP on
    the concatenated features, its blocks too; still no gradient across a block."""
    agent = _build("mpo", VISION, BOX, [_aux("clapp")], policy_hidden=[8], critic_hidden=[8], num_samples=4)
    module = agent.aux_modules["clapp"]
    assert [tuple(W.shape) for W in module.W] == [(32, 32), (64, 64), (64, 64), (512, 512)]
    batch = _transitions(VISION, BOX)
    losses = module.layer_losses(batch.obs, batch.next_obs, agent)
    blocks = encoder_blocks(agent.parts.module_at("encoder").cnns["pixels"])
    for l, loss in enumerate(losses):
        grads = torch.autograd.grad(loss, [p for block in blocks for p in block.parameters()], allow_unused=True)
        per_block = [len(list(block.parameters())) for block in blocks]
        i = 0
        for m, n in enumerate(per_block):
            reached = any(g is not None and bool(g.abs().sum() > 0) for g in grads[i:i + n])
            assert reached == (m == l), f"loss {l} vs block {m}"
            i += n
    with_mlp = _build("sac", VISION, BOX, [_aux("clapp")], encoder_hidden=[16], actor_hidden=[8], critic_hidden=[8])
    assert [tuple(W.shape) for W in with_mlp.aux_modules["clapp"].W][-1] == (16, 16)
    assert len(with_mlp.aux_modules["clapp"].W) == 5


def test_mpo_image_encoder_learns_from_the_critic_only_and_bootstraps_through_its_target_copy() -> None:
    fields = dict(policy_hidden=[8], critic_hidden=[8], num_samples=4, target_update_every=3)
    batch = _transitions(VISION, BOX, n=8)
    agent = _build("mpo", VISION, BOX, [], **fields)
    encoder, target = agent.parts.module_at("encoder"), agent.parts.module_at("target_encoder")
    start = [p.detach().clone() for p in encoder.parameters()]
    agent.update(batch)
    assert all(not torch.equal(a, b) for a, b in zip(encoder.parameters(), start)), "the critic did not train it"
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), start))  # copied every 3 updates only
    agent.update(batch), agent.update(batch)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), encoder.parameters()))

    cut = _build("mpo", VISION, BOX, [], **fields)  # the critic reads detached features: nothing else reaches it
    critic_forward = cut.critic.forward
    cut.critic.forward = lambda features, actions: critic_forward(features.detach(), actions)
    start = [p.detach().clone() for p in cut.parts.module_at("encoder").parameters()]
    cut.update(batch)
    assert all(torch.equal(a, b) for a, b in zip(cut.parts.module_at("encoder").parameters(), start)), \
        "the policy or dual loss reached the encoder"


def test_augmentations_of_a_vision_observation_move_the_image_only() -> None:
    from rlkit.auxiliary.augment import augment, check_augmentation, drq_views

    kinds = check_augmentation("auto", VISION, "agent.aux (curl)")
    assert kinds == {"pixels": "shift", "proprio": "none", "task": "none"}
    assert check_augmentation("noise", VISION, "x") == {"pixels": "none", "proprio": "noise", "task": "noise"}
    assert check_augmentation("crop", VISION, "x")["pixels"] == "crop"
    vectors = gym.spaces.Dict({"a": VECTOR, "b": VECTOR})
    assert check_augmentation("auto", vectors, "x") == {"a": "noise", "b": "noise"}
    with pytest.raises(ConfigError, match="needs a uint8 .* image among"):
        check_augmentation("shift", vectors, "agent.aux (curl)")
    with pytest.raises(ConfigError, match="every key .* is an image"):
        check_augmentation("noise", gym.spaces.Dict({"pixels": PIXELS}), "x")
    obs = _transitions(VISION, BOX, n=6).obs
    torch.manual_seed(0)
    out = augment(obs, kinds, pad=4)
    assert out["pixels"].dtype == torch.uint8 and not torch.equal(out["pixels"], obs["pixels"])
    assert out["proprio"] is obs["proprio"] and out["task"] is obs["task"]
    noisy = augment(obs, check_augmentation("noise", VISION, "x"), sigma=0.1)
    assert noisy["pixels"] is obs["pixels"] and not torch.equal(noisy["proprio"], obs["proprio"])
    views = drq_views(obs, 3, 4)  # DrQ: the state repeated, the image shifted in each view
    assert views["pixels"].shape == (18, 3, 64, 64) and views["pixels"].dtype == torch.uint8
    assert torch.equal(views["proprio"], obs["proprio"].repeat(3, 1))
    assert not torch.equal(views["pixels"][:6], views["pixels"][6:12])
    assert not torch.equal(views["pixels"][:6], obs["pixels"])


def test_drq_on_a_vision_observation_with_sac_and_dqn(monkeypatch) -> None:
    from rlkit.auxiliary import augment as augment_module

    shifted = []  # every random_shift call: DrQ must move the image key, and only it
    real_shift = augment_module.random_shift
    monkeypatch.setattr(augment_module, "random_shift", lambda images, pad: shifted.append(images.shape) or
                        real_shift(images, pad))
    for agent in (_build("sac", VISION, BOX, [], drq_k=2, drq_m=2, actor_hidden=[8], critic_hidden=[8]),
                  _build("dqn", VISION, DISCRETE, [], drq_k=2, drq_m=2, hidden=[8])):
        space = BOX if agent.cfg.name == "sac" else DISCRETE
        shifted.clear()
        metrics = agent.update(_transitions(VISION, space, n=8))
        assert math.isfinite(float(metrics["critic_loss" if agent.cfg.name == "sac" else "loss"]))
        assert shifted == [(16, 3, 64, 64), (16, 3, 64, 64)]  # K views of s', M views of s: images only

    # a masked game seen through pixels (a Dict of image + action_mask): the mask follows the K views
    masked = gym.spaces.Dict({"pixels": PIXELS, "action_mask": gym.spaces.Box(0, 1, (2,), np.int8)})
    agent = _build("dqn", masked, DISCRETE, [], drq_k=2, drq_m=2, hidden=[8])
    batch = _transitions(masked, DISCRETE, n=8)
    batch.next_obs["action_mask"][:] = torch.tensor([1, 0], dtype=torch.int8)
    assert math.isfinite(float(agent.update(batch)["loss"]))


# ---------------------------------------------------------------------------------- Mean Teacher
def test_consistency_loss_is_zero_under_identical_augmentations() -> None:
    agent = _build("dqn", PIXELS, DISCRETE, [_aux("mean_teacher", augment="none")])
    batch = _transitions(PIXELS, DISCRETE)
    assert float(agent.aux_modules["mean_teacher"].loss(batch, agent).detach()) == 0.0  # teacher == student, same view
    x = torch.randn(4, 3)
    assert float(consistency_loss(x, x.clone())) == 0.0
    assert math.isclose(float(consistency_loss(x, x + 1)), 1.0)
    shifted = _build("dqn", PIXELS, DISCRETE, [_aux("mean_teacher")])  # different random shifts: > 0
    assert float(shifted.aux_modules["mean_teacher"].loss(batch, shifted).detach()) > 0


# ---------------------------------------------------------------------------------- every module on every agent
AGENT_SETUPS = {
    "dqn-pixels": ("dqn", PIXELS, DISCRETE, {}),
    "dqn": ("dqn", VECTOR, DISCRETE, {"encoder_hidden": [16], "hidden": [16]}),
    "sac-pixels": ("sac", PIXELS, BOX, {"actor_hidden": [16], "critic_hidden": [16]}),
    "sac": ("sac", VECTOR, BOX, {"encoder_hidden": [16], "actor_hidden": [16], "critic_hidden": [16]}),
    "sac-vision": ("sac", VISION, BOX, {"actor_hidden": [16], "critic_hidden": [16]}),
    "mpo": ("mpo", VECTOR, BOX, {"encoder_hidden": [16], "policy_hidden": [16], "critic_hidden": [16],
                                 "num_samples": 4}),
    "mpo-pixels": ("mpo", PIXELS, BOX, {"policy_hidden": [16], "critic_hidden": [16], "num_samples": 4}),
    "mpo-vision": ("mpo", VISION, BOX, {"policy_hidden": [16], "critic_hidden": [16], "num_samples": 4}),
    "bc": ("bc", VECTOR, BOX, {"encoder_hidden": [16], "hidden": [16]}),
    "dt": ("decision_transformer", VECTOR, BOX, {"context_length": 5, "embed_dim": 16, "n_layers": 1,
                                                 "encoder_hidden": [16], "warmup_steps": 1}),
    "dt-vision": ("decision_transformer", VISION, BOX, {"context_length": 5, "embed_dim": 16, "n_layers": 1,
                                                        "warmup_steps": 1}),
}


@pytest.mark.parametrize("module", SSL)
@pytest.mark.parametrize("setup", list(AGENT_SETUPS))
def test_every_module_on_every_agent_smoke(module: str, setup: str) -> None:
    agent_name, obs_space, act_space, fields = AGENT_SETUPS[setup]
    agent = _build(agent_name, obs_space, act_space, [_aux(module)], **fields)
    head = agent.aux_modules[module]
    before = [p.clone() for p in agent.parts.module_at(head.part).parameters()]
    batch = (_sequences(obs_space, act_space) if agent_name == "decision_transformer"
             else _transitions(obs_space, act_space))
    for _ in range(3):
        metrics = agent.update(batch)
    value = float(metrics[f"aux/{module}"])
    assert math.isfinite(value)
    moved = [not torch.equal(a, b) for a, b in zip(before, agent.parts.module_at(head.part).parameters())]
    assert any(moved)
    restored = _build(agent_name, obs_space, act_space, [_aux(module)], **fields)  # checkpoint state round trip
    restored.load_state_dict(agent.state_dict())
    for name, module_ in agent.parts.modules.items():
        for (k, v), (_, w) in zip(module_.state_dict().items(), restored.parts.modules[name].state_dict().items()):
            assert torch.equal(v, w), f"{name}.{k}"


@pytest.mark.parametrize("module", SSL)
def test_every_module_attaches_to_ris_whose_encoder_reads_joined_goals(module: str) -> None:
    """RIS's encoder (actor.torso) reads the observation and goals joined by its `encoder_inputs`: modules are
    sized and trained through that map (CLAPP's blocks too), not on the raw Dict."""
    agent = _build("ris", GOALS, BOX, [_aux(module)], actor_hidden=[16], critic_hidden=[16], subgoal_hidden=[16])
    head = agent.aux_modules[module]
    loss = head.loss(_transitions(GOALS, BOX), agent)
    assert math.isfinite(float(loss.detach()))
    grads = torch.autograd.grad(loss, list(agent.parts.module_at(head.part).parameters()), allow_unused=True)
    assert any(g is not None and bool(g.abs().sum() > 0) for g in grads)


# ---------------------------------------------------------------------------------- runs: resume, DrQ, checks
def _pixel_dqn(total: int, **agent_fields) -> dict:
    return {"env": {"id": "rlkit/PixelCartPole-v0", "num_envs": 1},
            "agent": {"name": "dqn", "hidden": [16], "target_update_every": 20, "eps_decay_steps": 100,
                      **agent_fields},
            "train": {"total_steps": total, "learning_starts": 60, "train_every": 2, "batch_size": 8,
                      "eval_every": total // 2, "eval_episodes": 1, "checkpoint_every": total // 2,
                      "replay": {"capacity": 1000, "frame_stack": 3}},
            "seed": 3, "device": "cpu", "log": {"progress": False, "tensorboard": False, "plot": False, "log_every": 40}}


def _records(run_dir) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        record.pop("time", None)
        record.pop("sps", None)
    return records


def test_exact_resume_with_curl_attached_restores_the_momentum_part(tmp_path) -> None:
    from rlkit.runfiles.checkpoint import load_checkpoint
    from rlkit.runfiles.runs import LATEST

    data = _pixel_dqn(160, aux=[{"name": "curl", "weight": 1.0}])
    full, part = tmp_path / "full", tmp_path / "part"
    rlkit.train(data, run_dir=full)
    rlkit.train(data, run_dir=part, overrides={"train.total_steps": 80})
    rlkit.train(run_dir=part, resume=True, overrides={"train.total_steps": 160})
    assert _records(part) == _records(full)
    a, b = load_checkpoint(full / LATEST)["agent"], load_checkpoint(part / LATEST)["agent"]
    assert "aux.curl.key_encoder" in a and a.keys() == b.keys()
    for name, value in a.items():
        if isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values()):
            for key in value:
                torch.testing.assert_close(b[name][key], value[key], rtol=0, atol=0)
    assert any(r.get("aux/curl") is not None for r in _records(full))
    policy = rlkit.load(full, checkpoint="latest")  # rebuilt from config.yaml, the key encoder loaded too
    key = policy.agent.parts.modules["aux.curl.key_encoder"]
    torch.testing.assert_close(key.state_dict(), a["aux.curl.key_encoder"], rtol=0, atol=0)


def test_drq_on_sac_pixels_smoke_and_equivalence_when_off() -> None:
    agent = _build("sac", PIXELS, BOX, [], drq_k=2, drq_m=2, actor_hidden=[16], critic_hidden=[16])
    batch = _transitions(PIXELS, BOX, n=8)
    for _ in range(2):
        metrics = agent.update(batch)
    assert math.isfinite(float(metrics["critic_loss"]))
    from rlkit.auxiliary.augment import drq_views

    views = drq_views(batch.obs, 2, 4)
    assert views.shape == (16, 3, 64, 64) and views.dtype == torch.uint8
    assert drq_views(batch.obs, 0, 4) is batch.obs


def test_drq_is_refused_on_vector_observations_and_half_set() -> None:
    with pytest.raises(ConfigError, match="DrQ shifts images"):
        _build("sac", VECTOR, BOX, [], drq_k=2, drq_m=2)
    with pytest.raises(ConfigError, match="drq_k and agent.drq_m"):
        AGENTS["sac"][0](drq_k=2)


def test_run_checks_name_what_the_modules_need() -> None:
    base = _pixel_dqn(100)
    for aux, match in [({"name": "cpc", "offsets": [1, 2]}, "only future observation is next_obs"),
                       ({"name": "clapp", "offset": 2}, "set offsets: \\[1\\]"),
                       ({"name": "curl", "augment": "blur"}, "augment must be one of"),
                       ({"name": "mean_teacher", "tau": 0}, "tau must lie in")]:
        data = {**base, "agent": {**base["agent"], "aux": [{**aux, "weight": 1.0}]}}
        with pytest.raises(ConfigError, match=match) as info:
            build_run_config(data)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="shift needs uint8"):
        _build("sac", VECTOR, BOX, [_aux("curl", augment="shift")], encoder_hidden=[8])


def test_cpc_on_sequences_uses_every_offset() -> None:
    agent = _build("decision_transformer", VECTOR, BOX, [_aux("cpc", offsets=[1, 2, 3])], context_length=5,
                   embed_dim=16, n_layers=1, encoder_hidden=[16])
    loss = agent.aux_modules["cpc"].loss(_sequences(VECTOR, BOX), agent)
    assert math.isfinite(float(loss.detach())) and loss.requires_grad


def test_drq_on_dqn_pixels_smoke_and_refused_on_vectors() -> None:
    agent = _build("dqn", PIXELS, DISCRETE, [], drq_k=2, drq_m=2, double=True)
    batch = _transitions(PIXELS, DISCRETE, n=8)
    target = agent.td_target(batch)
    assert target.shape == (8,)
    for _ in range(2):
        metrics = agent.update(batch)
    assert math.isfinite(float(metrics["loss"]))
    off = _build("dqn", PIXELS, DISCRETE, [])  # DrQ off: the target is the plain one, bit for bit
    plain = off.td_target(batch)
    next_q = off.target_net(batch.next_obs).max(dim=1).values
    torch.testing.assert_close(plain, batch.rewards + batch.discounts * next_q, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="DrQ shifts images"):
        _build("dqn", VECTOR, DISCRETE, [], drq_k=1, drq_m=1)


def test_drq_dqn_target_and_loss_against_hand_computed_views(monkeypatch) -> None:
    """DrQ's equations for DQN (Kostrikov et al. 2020, eqs. 3-4): with K views f(s', nu_k) the target is
    y = r + gamma^n (1/K) sum_k Q_target(f(s', nu_k), argmax_a Q(f(s', nu_k), a)), and the loss averages the
    Huber error of Q(f(s, mu_m), a) against that one y over M views. With shifts of 0 pixels it is plain DQN to
    float rounding; with fixed, known shifts (patched) it is the average computed here view by view."""
    import torch.nn.functional as F

    import rlkit.auxiliary.augment as augment

    batch = _transitions(PIXELS, DISCRETE, n=6)
    plain = _build("dqn", PIXELS, DISCRETE, [], double=True)
    zero_pad = _build("dqn", PIXELS, DISCRETE, [], double=True, drq_k=2, drq_m=3, drq_pad=0)
    torch.testing.assert_close(zero_pad.td_target(batch), plain.td_target(batch), rtol=1e-6, atol=1e-6)
    loss_plain, loss_zero = plain.update(batch)["loss"], zero_pad.update(batch)["loss"]
    torch.testing.assert_close(loss_zero, loss_plain, rtol=1e-6, atol=1e-6)

    calls = []

    def offsets(n, high, device):  # known per-row offsets in [0, 2 * pad]: rows, then columns, call after call
        calls.append(n)
        return (torch.arange(n) * (2 + len(calls)) + len(calls)) % (high + 1)

    monkeypatch.setattr(augment, "_offsets", offsets)
    agent = _build("dqn", PIXELS, DISCRETE, [], double=True, drq_k=2, drq_m=3, drq_pad=4)
    with torch.no_grad():  # a target net unlike the online one, so selecting and evaluating are told apart
        for param in agent.target_net.parameters():
            param.add_(0.05 * torch.randn_like(param))
    batch = dataclasses.replace(batch, weights=torch.linspace(0.5, 1.5, len(batch.rewards)),
                                discounts=torch.tensor([0.99, 0.0, 0.97, 0.99, 0.5, 0.99]))

    def views(x, n, call):  # the n views drq_views makes on its call-th random_shift (1-based), row by row
        rows = x.repeat(n, 1, 1, 1)
        r = (torch.arange(len(rows)) * (2 + 2 * call - 1) + 2 * call - 1) % 9
        c = (torch.arange(len(rows)) * (2 + 2 * call) + 2 * call) % 9
        padded = F.pad(rows.float(), (4, 4, 4, 4), mode="replicate")
        out = torch.stack([padded[i, :, r[i]:r[i] + 64, c[i]:c[i] + 64] for i in range(len(rows))])
        return out.to(x.dtype)

    B = len(batch.rewards)
    with torch.no_grad():
        next_views = views(batch.next_obs, 2, 1)                                   # [K * B, ...]
        a_star = agent.q_net(next_views).argmax(dim=1, keepdim=True)
        bootstrap = agent.target_net(next_views).gather(1, a_star).squeeze(1).view(2, B).mean(dim=0)
        expected_target = batch.rewards + batch.discounts * bootstrap
        q = agent.q_net(views(batch.obs, 3, 2)).gather(1, batch.actions.long().view(-1, 1).repeat(3, 1))
        huber = F.huber_loss(q.view(3, B), expected_target.expand(3, B), delta=agent.cfg.huber_delta,
                             reduction="none")
        expected_loss = (batch.weights * huber).mean()
        online_eval = agent.q_net(next_views).gather(1, a_star).squeeze(1).view(2, B).mean(dim=0)
        assert not torch.allclose(online_eval, bootstrap)  # the test can tell the two networks' roles apart
    calls.clear()
    torch.testing.assert_close(agent.td_target(batch), expected_target, rtol=1e-6, atol=1e-6)
    calls.clear()
    metrics = agent.update(batch)  # td_target's shift is call 1, the loss's call 2
    assert calls == [2 * B, 2 * B, 3 * B, 3 * B]
    torch.testing.assert_close(metrics["loss"], expected_loss, rtol=1e-6, atol=1e-6)


def test_clapp_blocks_of_the_impala_resnet_stay_local() -> None:
    from rlkit.contract.networks import EncoderConfig

    agent = _build("dqn", PIXELS, DISCRETE, [_aux("clapp")], encoder=EncoderConfig(kind="impala"))
    module = agent.aux_modules["clapp"]
    assert len(module.W) == 4  # three stages and the linear layer
    batch = _transitions(PIXELS, DISCRETE, n=4)
    blocks = encoder_blocks(agent.parts.module_at("q_net.encoder"))
    losses = module.layer_losses(batch.obs, batch.next_obs, agent)
    for l, loss in enumerate(losses):
        for m, block in enumerate(blocks):
            grads = torch.autograd.grad(loss, list(block.parameters()), retain_graph=True, allow_unused=True)
            assert all((g is not None and bool(g.abs().sum() > 0)) if m == l else g is None for g in grads), (l, m)
