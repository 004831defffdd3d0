"""Observation encoders chosen by config (``agent.encoder.kind``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.config import load_config
from rlkit.contract.networks import BoardCNN, DictEncoder, FlatEncoder, NatureCNN, make_encoder
from rlkit.errors import ConfigError


def test_board_kind_sees_squares_through_a_cnn() -> None:
    board = gym.spaces.Box(0, 1, (6, 7, 2), np.int8)
    encoder = make_encoder(board, kind="board")
    assert isinstance(encoder, BoardCNN) and encoder.out_dim == 64 * 6 * 7
    assert encoder(torch.zeros(5, 6, 7, 2, dtype=torch.int8)).shape == (5, encoder.out_dim)
    # a Dict observation with a board and a mask: the board through the CNN, the mask flattened
    space = gym.spaces.Dict({"observation": board, "action_mask": gym.spaces.Box(0, 1, (7,), np.int8)})
    dict_encoder = make_encoder(space, kind="board")
    assert isinstance(dict_encoder, DictEncoder) and isinstance(dict_encoder.cnns["observation"], BoardCNN)
    assert dict_encoder.out_dim == 64 * 6 * 7 + 7
    # the default still flattens the board
    assert make_encoder(space).out_dim == 6 * 7 * 2 + 7


def test_board_cnn_is_translation_equivariant_inside_the_board() -> None:
    torch.manual_seed(0)
    encoder = BoardCNN(6, 7, 2, filters=4, layers=1)
    a = torch.zeros(1, 6, 7, 2)
    b = torch.zeros(1, 6, 7, 2)
    a[0, 2, 2, 0] = 1.0
    b[0, 3, 4, 0] = 1.0  # the same stone one row down, two columns right
    fa = encoder(a).reshape(4, 6, 7)
    fb = encoder(b).reshape(4, 6, 7)
    torch.testing.assert_close(fa[:, 1:4, 1:4], fb[:, 2:5, 3:6])


def test_kinds_and_their_errors() -> None:
    image = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert isinstance(make_encoder(image, kind="nature"), NatureCNN)
    assert isinstance(make_encoder(image, kind="flat"), FlatEncoder)
    with pytest.raises(ConfigError, match="kind 'nature' needs"):
        make_encoder(gym.spaces.Box(-1, 1, (3,), np.float32), kind="nature")
    with pytest.raises(ConfigError, match="kind 'board' needs"):
        make_encoder(gym.spaces.Box(-1, 1, (3,), np.float32), kind="board")
    with pytest.raises(ConfigError, match="agent.encoder.kind must be one of"):
        load_config(None, ["agent.encoder.kind=resnet9000"])
    cfg = load_config(None, ["agent.encoder.kind=board"])
    assert cfg.agent.encoder.kind == "board"


# --------------------------------------------------------------------------------------
# IMPALA ResNet and the Vision Transformer (issue 21)
# --------------------------------------------------------------------------------------

from rlkit.contract.encoders import ImpalaCNN, VisionTransformer  # noqa: E402
from rlkit.contract.networks import EncoderConfig  # noqa: E402


def _frames(*shape: int) -> torch.Tensor:
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _assert_every_weight_gets_a_gradient(encoder: torch.nn.Module, frames: torch.Tensor) -> None:
    encoder(frames).square().mean().backward()
    for name, p in encoder.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), f"no gradient reaches {name}"


@pytest.mark.parametrize("shape", [(3, 84, 84), (2, 37, 50)])
def test_impala_shapes_and_gradients(shape) -> None:
    torch.manual_seed(0)
    space = gym.spaces.Box(0, 255, shape, np.uint8)
    encoder = make_encoder(space, kind="impala")
    assert isinstance(encoder, ImpalaCNN) and encoder.out_dim == 256
    assert len(encoder.stages) == 3 and [s.conv.out_channels for s in encoder.stages] == [16, 32, 32]
    if shape == (3, 84, 84):  # 84 -> 42 -> 21 -> 11 (max-pool 3x3, stride 2, padding 1)
        assert encoder.fc.in_features == 32 * 11 * 11
    out = encoder(_frames(4, *shape))
    assert out.shape == (4, 256) and bool((out >= 0).all())  # ReLU after the linear layer
    _assert_every_weight_gets_a_gradient(encoder, _frames(4, *shape))
    small = make_encoder(space, kind=EncoderConfig(kind="impala", channels=[4, 8], features=32))
    assert small(_frames(2, *shape)).shape == (2, 32) and len(small.stages) == 2


def test_impala_scales_bytes_like_the_nature_cnn() -> None:
    encoder = ImpalaCNN(1, 8, 8, channels=[2], features=4)
    frames = _frames(2, 1, 8, 8)
    torch.testing.assert_close(encoder(frames), encoder(frames.float()))  # uint8 or float of the same values


def test_vit_shapes_gradients_and_patches() -> None:
    torch.manual_seed(0)
    space = gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)
    vit = make_encoder(space, kind="vit")
    assert isinstance(vit, VisionTransformer) and vit.out_dim == 128 and vit.patch == 8 and len(vit.blocks) == 4
    assert vit.pos_embed.shape == (1, 8 * 8 + 1, 128)  # 64 patches and the class token
    assert vit(_frames(3, 3, 64, 64)).shape == (3, 128)
    _assert_every_weight_gets_a_gradient(vit, _frames(3, 3, 64, 64))
    # the patch is chosen to divide the image: 84 x 84 takes 7 x 7 patches (12 x 12 of them)
    assert make_encoder(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), kind="vit").patch == 7
    small = make_encoder(gym.spaces.Box(0, 255, (1, 12, 20), np.uint8),
                         kind=EncoderConfig(kind="vit", patch=4, width=16, depth=1, heads=2))
    assert small(_frames(2, 1, 12, 20)).shape == (2, 16) and small.pos_embed.shape[1] == 3 * 5 + 1


def test_vit_class_token_is_the_output() -> None:
    """The output is the class token after the final LayerNorm: it attends to the patches (changing one patch
    changes it), and the output is normalised (zero mean over features at LayerNorm's initial affine)."""
    torch.manual_seed(0)
    vit = VisionTransformer(1, 16, 16, patch=8, dim=16, depth=1, heads=2)
    a = _frames(1, 1, 16, 16)
    b = a.clone()
    b[..., 8:, 8:] = 255 - b[..., 8:, 8:]
    out_a, out_b = vit(a), vit(b)
    assert not torch.allclose(out_a, out_b)
    torch.testing.assert_close(out_a.mean(dim=-1), torch.zeros(1), atol=1e-5, rtol=0)


def test_image_kinds_errors_are_one_line() -> None:
    vector = gym.spaces.Box(-1, 1, (3,), np.float32)
    for kind in ("impala", "vit"):
        with pytest.raises(ConfigError, match=f"kind '{kind}' needs uint8 C x H x W images"):
            make_encoder(vector, kind=kind)
    with pytest.raises(ConfigError, match=r"patch=5 does not divide the 16 x 16 image.*2, 4, 8, 16"):
        make_encoder(gym.spaces.Box(0, 255, (3, 16, 16), np.uint8), kind=EncoderConfig(kind="vit", patch=5))
    with pytest.raises(ConfigError, match="no patch size from 2 to 8 divides the 13 x 13 image"):
        make_encoder(gym.spaces.Box(0, 255, (3, 13, 13), np.uint8), kind="vit")
    with pytest.raises(ConfigError, match=r"width \(30\) must be a multiple of agent.encoder.heads \(4\)"):
        load_config(None, ["agent.encoder.kind=vit", "agent.encoder.width=30"])
    with pytest.raises(ConfigError, match="agent.encoder.depth must be >= 1"):
        load_config(None, ["agent.encoder.depth=0"])
    with pytest.raises(ConfigError, match="agent.encoder.channels must be a non-empty list"):
        load_config(None, ["agent.encoder.channels=[]"])
    with pytest.raises(ConfigError, match="unknown key 'agent.encoder.layers'"):
        load_config(None, ["agent.encoder.layers=3"])


# --------------------------------------------------------------------------------------
# Every agent that takes images builds and updates with each kind
# --------------------------------------------------------------------------------------

IMAGE = gym.spaces.Box(0, 255, (3, 16, 16), np.uint8)
SMALL = ["agent.encoder.channels=[4,8]", "agent.encoder.features=32", "agent.encoder.width=16", "agent.encoder.depth=1",
         "agent.encoder.heads=2"]
AGENT_SPACES = {"dqn": gym.spaces.Discrete(3), "sac": gym.spaces.Box(-1, 1, (2,), np.float32)}


def _image_agent(name: str, kind: str, extra: list[str] = ()):
    from rlkit.training.build import build_agent

    cfg = load_config(None, [f"agent.name={name}", f"agent.encoder.kind={kind}", *SMALL, *extra])
    return build_agent(cfg, IMAGE, AGENT_SPACES[name], torch.device("cpu"), init_encoder=True), cfg


def _image_batch(action_space: gym.Space, n: int = 8):
    from rlkit.experience.replay import ReplayBuffer

    rng = np.random.default_rng(0)
    replay = ReplayBuffer.from_spaces(IMAGE, action_space, capacity=32, num_envs=1, device=torch.device("cpu"),
                                      gamma=0.99, n_step=1, seed=0)
    for _ in range(16):
        action = np.asarray([action_space.sample()])
        replay.add(rng.integers(0, 256, (1, *IMAGE.shape), dtype=np.uint8), action, rng.random(1).astype(np.float32),
                   np.zeros(1, bool), np.zeros(1, bool), np.zeros(1, bool))
    return replay.sample(n)


@pytest.mark.parametrize("kind", ["impala", "vit"])  # (the Nature CNN's 8x8 stride-4 kernels need >= 36 pixels)
@pytest.mark.parametrize("name", ["dqn", "sac"])
def test_image_agents_build_and_update_with_each_kind(name, kind) -> None:
    classes = {"impala": ImpalaCNN, "vit": VisionTransformer}
    torch.manual_seed(0)
    agent, cfg = _image_agent(name, kind)
    encoder = agent.parts.module_at(agent.parts.encoder)
    assert isinstance(encoder, classes[kind])
    assert encoder.out_dim == (32 if kind == "impala" else 16)  # the settings of agent.encoder reached it
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    batch = _image_batch(AGENT_SPACES[name])
    for _ in range(2):
        metrics = agent.update(batch)
    assert all(bool(torch.isfinite(torch.as_tensor(v))) for v in metrics.values())
    assert any(not torch.equal(before[k], v) for k, v in encoder.state_dict().items())  # the encoder learns
    assert agent.predict(_frames(2, *IMAGE.shape).numpy()).shape[0] == 2


# --------------------------------------------------------------------------------------
# agent.encoder.init / freeze: which modules, and the file's checks
# --------------------------------------------------------------------------------------


def _encoder_file(path, kind: str = "impala", **settings):
    from rlkit.runfiles.encoder_file import encoder_metadata, save_encoder_file

    torch.manual_seed(123)
    cfg = EncoderConfig(kind=kind, **{**dict(channels=[4, 8], features=32, width=16, depth=1, heads=2), **settings})
    encoder = make_encoder(IMAGE, kind=cfg)
    save_encoder_file(path, encoder, encoder_metadata(kind, cfg.settings(), [], IMAGE, losses=["test"]))
    return encoder.state_dict()


def test_init_loads_every_copy_and_freeze_keeps_them(tmp_path) -> None:
    """SAC: the critic's encoder (the declared one), its target copy and the actor's own encoder all start from
    the file; with freeze the trainable ones get no gradient, so updates leave them as loaded while the heads
    learn. The target copies are never trained anyway."""
    from rlkit.training.build import encoder_copies

    weights = _encoder_file(tmp_path / "enc.safetensors")
    agent, _ = _image_agent("sac", "impala", [f"agent.encoder.init={tmp_path / 'enc.safetensors'}",
                                              "agent.encoder.freeze=true"])
    copies = dict(encoder_copies(agent))
    assert copies == {"critic.encoder": "trains", "policy.encoder": "acts", "target_critic.encoder": "target"}
    for name in copies:
        for key, value in agent.parts.module_at(name).state_dict().items():
            assert torch.equal(value, weights[key]), (name, key)
    assert not any(p.requires_grad for name in copies for p in agent.parts.module_at(name).parameters())
    batch = _image_batch(AGENT_SPACES["sac"])
    for _ in range(3):
        agent.update(batch)
    for name in copies:
        for key, value in agent.parts.module_at(name).state_dict().items():
            assert torch.equal(value, weights[key]), (name, key)
    critic_rest = [p for n, p in agent.critic.named_parameters() if not n.startswith("encoder.")]
    assert critic_rest and all(p.requires_grad for p in critic_rest)
    # DQN: the q-network's encoder and the target network's
    agent, _ = _image_agent("dqn", "impala", [f"agent.encoder.init={tmp_path / 'enc.safetensors'}"])
    assert dict(encoder_copies(agent)) == {"q_net.encoder": "acts", "target_net.encoder": "target"}
    assert torch.equal(agent.target_net.encoder.fc.weight, weights["fc.weight"])
    assert all(p.requires_grad for p in agent.q_net.encoder.parameters())  # fine-tuned: trainable


def test_init_is_applied_only_to_a_new_run(tmp_path) -> None:
    """build_agent loads the file only when asked (a new run); a reload (eval, export, resume) builds the agent
    without reading it: the checkpoint holds the weights, and the file may be gone."""
    from rlkit.training.build import build_agent

    _encoder_file(tmp_path / "enc.safetensors")
    cfg = load_config(None, ["agent.encoder.kind=impala", *SMALL, f"agent.encoder.init={tmp_path / 'gone.safetensors'}"])
    build_agent(cfg, IMAGE, gym.spaces.Discrete(3), torch.device("cpu"))  # not read: no error
    with pytest.raises(ConfigError, match="agent.encoder.init: no file"):
        build_agent(cfg, IMAGE, gym.spaces.Discrete(3), torch.device("cpu"), init_encoder=True)


def test_init_errors_name_what_differs(tmp_path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "enc.safetensors"
    weights = _encoder_file(path)
    init = f"agent.encoder.init={path}"
    with pytest.raises(ConfigError, match="holds a 'impala' encoder, this run builds 'vit'; set agent.encoder.kind: impala"):
        _image_agent("dqn", "vit", [init])
    with pytest.raises(ConfigError, match=r"other encoder settings \(features: file 32 vs run 64\)"):
        _image_agent("dqn", "impala", [init, "agent.encoder.features=64"])
    with pytest.raises(ConfigError, match=r"encoder_hidden \[\], this run's agent.encoder_hidden is \[8\]"):
        _image_agent("dqn", "impala", [init, "agent.encoder_hidden=[8]"])
    # a tensor of the wrong shape under the right metadata: named, expected vs found
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    bad = {k: v.clone() for k, v in weights.items()}
    bad["fc.weight"] = torch.zeros(32, 7)
    save_file(bad, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(ConfigError, match=r"tensor 'fc.weight' of .* has shape \[32, 7\], this run's encoder expects "
                                          r"\[32, 128\]"):
        _image_agent("dqn", "impala", [f"agent.encoder.init={tmp_path / 'bad.safetensors'}"])
    del bad["fc.bias"]
    save_file(bad, str(tmp_path / "short.safetensors"), metadata=meta)
    with pytest.raises(ConfigError, match="has no tensor 'fc.bias'"):
        _image_agent("dqn", "impala", [f"agent.encoder.init={tmp_path / 'short.safetensors'}"])
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="is not a safetensors file"):
        _image_agent("dqn", "impala", [f"agent.encoder.init={tmp_path / 'junk.safetensors'}"])
    save_file(weights, str(tmp_path / "plain.safetensors"))  # weights without rlkit's metadata
    with pytest.raises(ConfigError, match="not an encoder file written by `rlkit pretrain`"):
        _image_agent("dqn", "impala", [f"agent.encoder.init={tmp_path / 'plain.safetensors'}"])
    other = tmp_path / "other.safetensors"
    from rlkit.runfiles.encoder_file import encoder_metadata, save_encoder_file
    cfg = EncoderConfig(kind="impala", channels=[4, 8], features=32)
    save_encoder_file(other, make_encoder(gym.spaces.Box(0, 255, (1, 16, 16), np.uint8), kind=cfg),
                      encoder_metadata("impala", cfg.settings(), [], gym.spaces.Box(0, 255, (1, 16, 16), np.uint8)))
    with pytest.raises(ConfigError, match="was pretrained on observations .*1, 16, 16.*this run observes .*3, 16, 16"):
        _image_agent("dqn", "impala", [f"agent.encoder.init={other}"])
