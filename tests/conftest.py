import os

import pytest
import torch

# Two shared cores: more than one intra-op thread makes tiny networks spin-wait (see RunConfig.torch_threads).
torch.set_num_threads(1)
os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture
def cartpole_data():
    """A small, fast CartPole run config as raw YAML data (tests override what they need)."""
    return {
        "seed": 3,
        "env": {"id": "CartPole-v1", "num_envs": 2},
        "agent": {"name": "dqn", "lr": 1e-3, "hidden": [32, 32], "target_update_every": 50, "eps_decay_steps": 1000},
        "train": {"total_steps": 1200, "learning_starts": 200, "train_every": 4, "gradient_steps": 1,
                  "batch_size": 32, "replay": {"capacity": 5000}, "eval_every": 600, "eval_episodes": 2,
                  "checkpoint_every": 400},
        "log": {"progress": False, "tensorboard": False, "log_every": 200, "plot": False},
    }
