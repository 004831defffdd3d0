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
