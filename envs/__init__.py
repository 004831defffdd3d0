"""rlkit.envs: Gymnasium environments and wrappers. Importing this registers every rlkit/... id."""

import gymnasium

from rlkit.envs.atari import ATARI_GAMES, MAX_EPISODE_STEPS, atari_env_name

# Atari (envs/atari.py): rlkit/{Game}-v0 for every ALE game; gymnasium.make -> one env,
# gymnasium.make_vec(..., vectorization_mode="vector_entry_point") -> ALE's native vector env.
for _game in ATARI_GAMES:
    gymnasium.register(
        id=f"rlkit/{atari_env_name(_game)}-v0",
        entry_point="rlkit.envs.atari:make_atari_env",
        vector_entry_point="rlkit.envs.atari:make_atari_vector_env",
        max_episode_steps=MAX_EPISODE_STEPS,
        kwargs={"game": _game},
    )

# MuJoCo motion imitation (envs/humanoid_imitation.py): the DeepMimic humanoid tracking mocap clips
# (envs/mocap.py); truncation is handled by the env itself (clip end, or max_episode_steps for loops).
gymnasium.register(
    id="rlkit/HumanoidImitation-v0",
    entry_point="rlkit.envs.humanoid_imitation:HumanoidImitationEnv",
)

# Goal-conditioned point mass (envs/point_goal.py): Dict observations, dense or sparse reward.
gymnasium.register(id="rlkit/PointGoal-v0", entry_point="rlkit.envs.point_goal:PointGoalEnv",
                   max_episode_steps=50, kwargs={"continuous": True})
gymnasium.register(id="rlkit/PointGoalDiscrete-v0", entry_point="rlkit.envs.point_goal:PointGoalEnv",
                   max_episode_steps=50, kwargs={"continuous": False})
