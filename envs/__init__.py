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
# Catch & Carry tasks for the same humanoid (issue 23; envs/humanoid_tasks.py): Dict observations (the imitation env's
# proprioception, egocentric task features, optional head-camera pixels); time limits handled by the envs themselves.
gymnasium.register(id="rlkit/HumanoidGoToTarget-v0", entry_point="rlkit.envs.humanoid_tasks:GoToTargetEnv")
gymnasium.register(id="rlkit/HumanoidCarry-v0", entry_point="rlkit.envs.humanoid_tasks:CarryEnv")

# Goal envs: GoalEnvMethods (envs/goal_envs.py) as the outermost wrapper of gymnasium.make, so the made env answers
# compute_reward / compute_terminated the way SB3's check_env and HER look them up (TimeLimit no longer forwards).
from rlkit.envs.goal_envs import RIS_EPISODE_STEPS, GoalEnvMethods  # noqa: E402  (imports no gymnasium_robotics)

GOAL_WRAPPERS = (GoalEnvMethods.wrapper_spec(),)

# Goal-conditioned point mass (envs/point_goal.py): Dict observations, dense or sparse reward.
gymnasium.register(id="rlkit/PointGoal-v0", entry_point="rlkit.envs.point_goal:PointGoalEnv",
                   max_episode_steps=50, kwargs={"continuous": True}, additional_wrappers=GOAL_WRAPPERS)
gymnasium.register(id="rlkit/PointGoalDiscrete-v0", entry_point="rlkit.envs.point_goal:PointGoalEnv",
                   max_episode_steps=50, kwargs={"continuous": False}, additional_wrappers=GOAL_WRAPPERS)

# --- Goal-conditioned navigation and manipulation (issue 10; envs/goal_envs.py) ---------------------------
# Ant mazes under the RIS protocol (success: xy distance < 0.5, 600 steps for the U, eval_goal=True for the
# evaluation task), the fast 2-D PointMaze, Fetch Push / PickAndPlace and a pixel Fetch Push, all over
# gymnasium-robotics, which is imported only when one of them is made (it is slow to import and prints a
# notice). mujoco_compat.apply() arms the patch of gymnasium-robotics' joint helpers for MuJoCo >= 4
# (applied when gymnasium_robotics.utils.mujoco_utils is imported; a no-op where upstream already works).
from rlkit.envs import mujoco_compat  # noqa: E402

mujoco_compat.apply()
for _name, _maze, _steps in (("U", "u", RIS_EPISODE_STEPS), ("Medium", "medium", 1000), ("Large", "large", 1000)):
    gymnasium.register(id=f"rlkit/AntMaze{_name}-v0", entry_point="rlkit.envs.goal_envs:make_ant_maze",
                       max_episode_steps=_steps, kwargs={"maze": _maze},
                       additional_wrappers=GOAL_WRAPPERS)
for _name, _maze, _steps in (("U", "u", 300), ("Medium", "medium", 600), ("Large", "large", 800)):  # upstream's lengths
    gymnasium.register(id=f"rlkit/PointMaze{_name}-v0", entry_point="rlkit.envs.goal_envs:make_point_maze",
                       max_episode_steps=_steps, kwargs={"maze": _maze},
                       additional_wrappers=GOAL_WRAPPERS)
gymnasium.register(id="rlkit/FetchPush-v0", entry_point="rlkit.envs.goal_envs:make_fetch",
                   max_episode_steps=50, kwargs={"task": "push"},
                   additional_wrappers=GOAL_WRAPPERS)
gymnasium.register(id="rlkit/FetchPickAndPlace-v0", entry_point="rlkit.envs.goal_envs:make_fetch",
                   max_episode_steps=50, kwargs={"task": "pick_and_place"},
                   additional_wrappers=GOAL_WRAPPERS)
gymnasium.register(id="rlkit/FetchPushPixels-v0", entry_point="rlkit.envs.goal_envs:make_fetch",
                   max_episode_steps=50, kwargs={"task": "push", "pixels": True},
                   additional_wrappers=GOAL_WRAPPERS)

# Two-player board games (envs/board_games.py, PettingZoo classic from one seat, the opponent inside the env):
# Dict observations with an action mask; opponent random / heuristic / selfplay (a pool of the learner's snapshots).
for _name, _game_name in (("ConnectFour", "connect_four"), ("TicTacToe", "tictactoe"), ("LeducHoldem", "leduc_holdem")):
    gymnasium.register(id=f"rlkit/{_name}-v0", entry_point="rlkit.envs.board_games:make_board_game",
                       kwargs={"game": _game_name})

# --- PettingZoo parallel games as agent-major rows (issue 20; envs/multiagent.py) ----------------------------
# Vector-only ids: gymnasium.make_vec(id, num_envs=copies, vectorization_mode="vector_entry_point") gives
# len(possible_agents) * copies rows (one per agent per copy); there is no single-env gymnasium.make for them.
# PettingZoo is imported only when one is made.
gymnasium.register(id="rlkit/Pistonball-v0", vector_entry_point="rlkit.envs.multiagent:make_parallel_rows",
                   kwargs={"parallel_env": "pettingzoo.butterfly.pistonball_v6:parallel_env",
                           "env_kwargs": {"continuous": False}, "frame_size": 84, "grayscale": True})
gymnasium.register(id="rlkit/KnightsArchersZombies-v0", vector_entry_point="rlkit.envs.multiagent:make_parallel_rows",
                   kwargs={"parallel_env": "pettingzoo.butterfly.knights_archers_zombies_v11:parallel_env",
                           # its reset keeps the zombie-spawn timer: exact resume records it (envs/multiagent.py)
                           "carry_over": ["zombie_spawn_interval._current_step"]})

# --- Pixel observations of rendered classic-control tasks (issue 21; envs/pixels.py): 64x64 grey, 3 frames,
# the true state in info["state"]; small enough for CPU runs of the self-supervised modules.
gymnasium.register(id="rlkit/PixelCartPole-v0", entry_point="rlkit.envs.pixels:make_pixel_env",
                   kwargs={"env_id": "CartPole-v1"})
gymnasium.register(id="rlkit/PixelPendulum-v0", entry_point="rlkit.envs.pixels:make_pixel_env",
                   kwargs={"env_id": "Pendulum-v1"})
