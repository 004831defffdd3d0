"""``rlkit/AntMazeU-v0`` on mujoco-warp: N Ant-maze worlds stepped together on one warp device.

``env.backend: warp`` in a run's config selects it (``rlkit.training.build.make_vector_env``); in Python::

    envs = AntMazeWarpEnv(num_envs=256)              # maze="u", device="auto"; eval_goal=True: RIS's test task

It is a gymnasium :class:`~gymnasium.vector.VectorEnv` with the NEXT_STEP autoreset that rlkit's collector
expects and the contract of :func:`rlkit.envs.goal_envs.make_ant_maze` (its module docstring): Dict observations
``observation`` / ``achieved_goal`` / ``desired_goal`` (float32), the sparse (0 / -1) or dense (``-distance``)
goal reward, termination on success (xy distance < 0.5), truncation at the registered episode length (600 steps
for the U), ``info["is_success"]`` and ``info["goal_distance"]``, and the same keyword arguments, plus ``device``
(``auto``: ``cuda`` when torch sees a GPU, else warp's ``cpu`` device), ``nconmax`` (contacts per world),
``njmax`` (constraint rows per world), ``max_episode_steps`` and ``cuda_graph`` (``auto``: on CUDA a step's
substeps replay as one CUDA graph, :class:`rlkit.envs.humanoid_warp.StepGraph`). The physics is mujoco-warp's
``step`` (the Ant's RK4, ``frame_skip`` = 5 substeps per env step) on one ``mujoco_warp.Data`` of ``num_envs``
worlds built from the CPU env's own ``MjModel`` (gymnasium-robotics' generated maze MJCF), so walls, floor and Ant
are the same model.
Everything around it runs batched on the same device, on torch views of warp's arrays (``warp.to_torch``,
zero-copy):

* the observation: Ant-v5's ``qpos[2:]``, ``qvel`` and, as Ant-v5 by default, the external forces
  ``cfrc_ext[1:]`` clipped to ``contact_force_range`` (78 of the 105 entries), which MuJoCo computes only in
  ``mj_rnePostConstraint`` (Gymnasium calls it after every ``mj_step``; here ``mujoco_warp.rne_postconstraint``
  after the last substep); ``achieved_goal`` = the torso's xy, ``desired_goal`` = the world's goal;
* reward, success, termination and truncation from the xy distance;
* resets, drawn on the device for all resetting worlds at once, with upstream's distribution: a goal at a random
  free cell's centre plus uniform noise of +-``position_noise_range`` cells (a quarter cell, +-1 m), a start at a
  random free cell whose centre is more than half a cell (2 m) from that goal (upstream's rejection loop), plus the
  same noise; with ``eval_goal=True`` RIS's test task (start and goal at the ends of the U, +-0.25 m). The Ant
  starts at rest in the model's ``qpos0`` pose (``reset_noise_scale`` is 0 in the maze, as upstream).

Each step returns host numpy arrays (what the collector and the replay take): one stacked device tensor is
copied to the host once per step (on the CPU device that is a view).

HER: the vector env has the goal env's batched ``compute_reward(achieved_goal, desired_goal, info)`` and
``compute_terminated`` (the CPU env's own methods, numpy on any leading batch shape), which
:func:`rlkit.experience.her.env_compute_reward` finds on the vector env itself (a batched env has no
``envs[0]``).

Where it differs from the CPU env (the closest exact thing that batches):

* Contact frames: MuJoCo's ``mjc_PlaneCapsule`` aligns the first tangent of a plane-capsule contact with the
  capsule's axis projected on the plane; mujoco-warp 4.0 does so only while that projection is >= 0.5 long (the
  capsule less than 60 degrees from the plane) and otherwise takes the world's y axis. The Ant's lower legs stand
  steeper than that, and Ant-v5's friction cone is pyramidal, whose edges follow the tangents: with mujoco-warp's
  own frames every foot contact pushed differently (qvel 0.3 apart after one substep from the same state). The
  model's contact filter (:class:`rlkit.envs.warp_contacts.CapsuleFrameFilter`, shared with the humanoid's backend;
  mujoco-warp's ``callback.contactfilter``, run after every collision pass, RK4 stages included) rewrites those
  frames as MuJoCo's.
* Precision: mujoco-warp computes in float32 (MuJoCo in float64). With MuJoCo's frames, one env step from a shared
  state matches to ~1e-6 in qpos (~1e-4 in the observation) with or without contacts, and 20 steps (1 s) of random
  actions to ~2e-5; after that the Ant's own sensitivity takes over (MuJoCo against itself, joint angles perturbed
  by 1e-6, is 0.4 apart after 40 steps): trajectories are alike in distribution, not step for step
  (tests/test_warp_ant.py; docs/benchmarks.md, "mujoco-warp backend").
* Random streams: ``reset(seed=s)`` seeds one torch generator for all worlds: the draws have the CPU env's
  distribution, not the streams of gymnasium's per-sub-env seeds ``s + i``. ``reset(options=...)`` takes
  ``goal_cell`` / ``reset_cell`` as upstream (one ``(row, col)`` for all worlds, or one per world), or exact
  states ``goal`` [N, 2] with ``qpos`` [N, nq] (and optionally ``qvel`` [N, nv]), for tests and studies.
* Divergence: MuJoCo resets a world's data itself on a bad acceleration (an Ant at ``qpos0``, inside the U's
  central wall); mujoco-warp has no such check. Here a world diverges when, after any substep, an entry of its
  ``qpos`` / ``qvel`` is not finite or of its ``qacc`` exceeds MuJoCo's ``mjMAXVAL`` (1e10, ``mj_checkAcc``'s
  test); it is put back into its state before the step and the episode is truncated (``info["diverged"]``), so
  no NaN reaches the replay, and it starts anew on the next step.
* Reset of a world's data: a resetting world gets what ``mj_resetData`` leaves that the next step reads (start
  ``qpos``, zero ``qvel``, ``ctrl``, ``qacc_warmstart``, applied forces and ``time``; zero ``cfrc_ext``, as the
  CPU env's reset observation has), without ``mujoco_warp.reset_data``, which re-creates its kernels per call.
* No rendering (``render_mode`` must be None), no ``x_position`` / ``reward_ctrl``-style Ant infos (the goal
  task ignores them), and no exact resume (a resumed run re-seeds its envs, as with ALE's native vector env).
* The autoreset step still integrates the resetting worlds with their (ignored) actions before overwriting them
  with their new start state: one batched step for all worlds is cheaper than splitting the batch.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlkit.envs.goal_envs import MAZES, make_ant_maze
from rlkit.envs.humanoid_warp import MJ_MAXVAL, StepGraph, _warp_device, import_warp, put_worlds, warp_scope
from rlkit.envs.warp_contacts import CapsuleFrameFilter
from rlkit.errors import ConfigError

MAZE_IDS = {"u": "rlkit/AntMazeU-v0", "medium": "rlkit/AntMazeMedium-v0", "large": "rlkit/AntMazeLarge-v0"}
"""The registered id of each maze: its ``max_episode_steps`` is this env's default episode length."""


class AntMazeWarpEnv(gym.vector.VectorEnv):
    """``num_envs`` Ant-maze worlds on one mujoco-warp ``Data``; see the module docstring."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, device: str = "auto", nconmax: int = 32, njmax: int = 128,
                 max_episode_steps: int | None = None, render_mode: str | None = None, maze: str = "u",
                 eval_goal: bool = False, cuda_graph: str | bool = "auto", **env_kwargs: Any):
        mjw, wp = import_warp(device, num_envs, render_mode)
        if maze not in MAZES:
            raise ConfigError(f"env.kwargs.maze must be one of {sorted(MAZES)}, got {maze!r}")
        if max_episode_steps is None:
            max_episode_steps = gym.spec(MAZE_IDS[maze]).max_episode_steps
        if int(max_episode_steps) < 1:
            raise ConfigError(f"env.kwargs.max_episode_steps must be >= 1, got {max_episode_steps}")
        self._mjw, self._wp = mjw, wp
        # the CPU env: the model (maze MJCF + Ant), the maze's cells, the goal reward and the Ant's observation settings
        self.cpu_env = cpu = make_ant_maze(maze=maze, eval_goal=eval_goal, **env_kwargs)
        self.num_envs = n = int(num_envs)
        self.max_episode_steps = int(max_episode_steps)
        self.single_observation_space = cpu.observation_space
        self.single_action_space = cpu.action_space
        self.observation_space = gym.vector.utils.batch_space(cpu.observation_space, n)
        self.action_space = gym.vector.utils.batch_space(cpu.action_space, n)
        self.metadata = {**self.metadata, "render_fps": cpu.metadata["render_fps"]}
        self.device = _warp_device(device)
        ant = cpu.inner.ant_env
        self._frame_skip = int(ant.frame_skip)
        self._wp_device, self._model, self._data, self._stream = put_worlds(wp, mjw, ant.model, self.device, n,
                                                                            nconmax, njmax)
        d = self._data
        view = wp.to_torch  # zero-copy torch views of the worlds' state
        self._qpos, self._qvel, self._qacc, self._ctrl = view(d.qpos), view(d.qvel), view(d.qacc), view(d.ctrl)
        self._cfrc_ext = view(d.cfrc_ext)
        self._cleared = [view(getattr(d, f)) for f in ("qacc_warmstart", "act", "qfrc_applied", "xfrc_applied",
                                                        "time", "cfrc_ext") if getattr(d, f).size > 0]
        self._contacts(ant.model, d)
        self._step_graph = StepGraph(wp, self.device, cuda_graph)  # the frame_skip substeps, on CUDA one graph
        self._command = self._ctrl.clone()  # a step's clamped action: the substeps' fixed input
        self._bad = torch.zeros(n, dtype=torch.bool, device=self.device)  # and their fixed output
        self._tables(cpu, ant)
        self._goal = torch.zeros(n, 2, dtype=torch.float32, device=self.device)
        self._steps = torch.zeros(n, dtype=torch.long, device=self.device)
        self._autoreset = torch.zeros(n, dtype=torch.bool, device=self.device)
        self._generator = torch.Generator(device=self.device)
        self._generator.seed()

    def _tables(self, cpu, ant) -> None:
        """The maze's cells, the start pose, the control range and the observation settings as device tensors."""
        dev, f32, maze = self.device, torch.float32, cpu.inner.maze
        self._maze, self._scaling = maze, float(maze.maze_size_scaling)
        self._goal_locations = torch.as_tensor(np.stack(maze.unique_goal_locations), dtype=f32, device=dev)
        self._reset_locations = torch.as_tensor(np.stack(maze.unique_reset_locations), dtype=f32, device=dev)
        self._noise = float(cpu.inner.position_noise_range) * self._scaling  # metres either side of a cell centre
        cells = cpu.reset_options  # eval_goal: {"reset_cell", "goal_cell"}, else None
        self._fixed_cells = None if cells is None else (cells["reset_cell"], cells["goal_cell"])
        self._qpos0 = torch.as_tensor(ant.model.qpos0, dtype=f32, device=dev)
        model = ant.model
        limited = torch.as_tensor(model.actuator_ctrllimited.astype(bool), device=dev)
        lo, hi = (torch.as_tensor(model.actuator_ctrlrange[:, i], dtype=f32, device=dev) for i in (0, 1))
        inf = torch.full_like(lo, float("inf"))
        self._ctrl_low, self._ctrl_high = torch.where(limited, lo, -inf), torch.where(limited, hi, inf)
        self._contact_forces = bool(ant._include_cfrc_ext_in_observation)
        self._force_range = tuple(float(x) for x in ant._contact_force_range)
        self._obs_dim = cpu.observation_space["observation"].shape[0]
        self._success_radius, self._sparse = cpu.success_radius, cpu.reward_type == "sparse"
        self._terminate_on_success = cpu.terminate_on_success

    def _contacts(self, model, d) -> None:
        """MuJoCo's plane-capsule contact frames as the model's contact filter (:mod:`rlkit.envs.warp_contacts`)."""
        self._align_capsule_frames = CapsuleFrameFilter(model, self._model, d).install()

    # ---------------------------------------------------------------- goal env methods (HER relabels with them)

    def compute_reward(self, achieved_goal: Any, desired_goal: Any, info: Any = None) -> np.ndarray:
        """The goal env's reward (0 / -1 sparse, ``-distance`` dense), float32, any leading batch shape."""
        return self.cpu_env.compute_reward(achieved_goal, desired_goal, info)

    def compute_terminated(self, achieved_goal: Any, desired_goal: Any, info: Any = None) -> np.ndarray:
        """``terminate_on_success and distance < success_radius`` per row (GoalEnv API, batched)."""
        return self.cpu_env.compute_terminated(achieved_goal, desired_goal, info)

    # ---------------------------------------------------------------- resets

    def _cell_xy(self, cells: Any, count: int) -> torch.Tensor:
        """Cell centres ``[count, 2]`` of ``(row, col)`` cells (one for all, or one per world); free cells only."""
        rows = np.broadcast_to(np.asarray(cells, dtype=np.int64).reshape(-1, 2), (count, 2))
        maze = self._maze
        for r, c in {(int(r), int(c)) for r, c in rows}:
            if not (0 <= r < maze.map_length and 0 <= c < maze.map_width) or maze.maze_map[r][c] == 1:
                raise ValueError(f"reset options: cell ({r}, {c}) is a wall or outside the {maze.map_length}x"
                                 f"{maze.map_width} maze")
        xy = np.stack([maze.cell_rowcol_to_xy(rc) for rc in rows])
        return torch.as_tensor(xy, dtype=torch.float32, device=self.device)

    def _uniform(self, count: int) -> torch.Tensor:
        u = torch.rand(count, 2, generator=self._generator, device=self.device)
        return (2.0 * u - 1.0) * self._noise

    def _draw_starts(self, mask: torch.Tensor, reset_cell: Any = None, goal_cell: Any = None) -> torch.Tensor:
        """Goals of the worlds in ``mask`` (stored) and their start xy (returned, ``[count, 2]``), as upstream draws
        them (module docstring); ``reset_cell`` / ``goal_cell`` fix the cells, as upstream's reset options."""
        count = int(mask.sum())
        if count == 0:
            return self._goal.new_zeros(0, 2)
        if self._fixed_cells is not None:  # eval_goal: its cells unless the call's options name others (as upstream)
            reset_cell = self._fixed_cells[0] if reset_cell is None else reset_cell
            goal_cell = self._fixed_cells[1] if goal_cell is None else goal_cell
        if goal_cell is None:
            pick = torch.randint(len(self._goal_locations), (count,), generator=self._generator, device=self.device)
            goal = self._goal_locations[pick]
        else:
            goal = self._cell_xy(goal_cell, count)
        goal = goal + self._uniform(count)
        if reset_cell is None:  # upstream's rejection loop = uniform over the cells more than half a cell away
            far = torch.cdist(goal, self._reset_locations) > 0.5 * self._scaling            # [count, cells]
            start = self._reset_locations[torch.multinomial(far.float(), 1, generator=self._generator).squeeze(1)]
        else:
            start = self._cell_xy(reset_cell, count)
        self._goal[mask] = goal
        return start + self._uniform(count)

    def _set_start_state(self, mask: torch.Tensor, xy: torch.Tensor, qpos: torch.Tensor | None = None,
                         qvel: torch.Tensor | None = None) -> None:
        """Worlds in ``mask``: what ``mj_resetData`` leaves, then the Ant at rest in ``qpos0`` at ``xy`` (or ``qpos``)."""
        idx = mask.nonzero().squeeze(1)
        if idx.numel() == 0:
            return
        if qpos is None:
            qpos = self._qpos0.expand(len(idx), -1).clone()
            qpos[:, :2] = xy
        self._qpos[idx] = qpos
        self._qvel[idx] = 0.0 if qvel is None else qvel
        self._ctrl[idx] = 0.0
        for field in self._cleared:
            field[idx] = 0
        self._steps[idx] = 0

    def _exact_states(self, options: dict) -> None:
        """``reset(options={"goal": ..., "qpos": ..., "qvel": ...})``: every world at the given state."""
        n, dev = self.num_envs, self.device

        def rows(key, width):
            a = torch.as_tensor(np.asarray(options[key], dtype=np.float32), device=dev)
            if a.shape not in ((width,), (n, width)):
                raise ValueError(f"reset options: {key} of shape {tuple(a.shape)}, expected ({width},) or ({n}, {width})")
            return a.expand(n, width).clone()

        goal, qpos = rows("goal", 2), rows("qpos", self._qpos.shape[1])
        qvel = rows("qvel", self._qvel.shape[1]) if "qvel" in options else None
        self._set_start_state(torch.ones(n, dtype=torch.bool, device=dev), qpos[:, :2], qpos, qvel)
        self._goal[:] = goal

    # ---------------------------------------------------------------- outputs

    def _outputs(self, reward, terminated, truncated, diverged):
        """Observations, reward, flags and infos of all worlds: one device tensor copied to the host once, then split."""
        parts = [self._qpos[:, 2:], self._qvel]
        if self._contact_forces:
            low, high = self._force_range
            parts.append(self._cfrc_ext[:, 1:].reshape(self.num_envs, -1).clamp(low, high))
        achieved = self._qpos[:, :2]
        distance = torch.linalg.vector_norm(achieved - self._goal, dim=1)
        cols = torch.stack([reward, terminated, truncated, diverged, distance], dim=1).to(torch.float32)
        host = torch.cat([*parts, achieved, self._goal, cols], dim=1).cpu().numpy()
        k = self._obs_dim
        columns = {"observation": host[:, :k], "achieved_goal": host[:, k:k + 2], "desired_goal": host[:, k + 2:k + 4]}
        obs = {key: np.ascontiguousarray(columns[key]) for key in self.single_observation_space.spaces}
        rest = host[:, k + 4:].astype(np.float64)
        info = {"goal_distance": rest[:, 4], "is_success": rest[:, 4] < self._success_radius,
                "diverged": rest[:, 3] > 0.5}
        return obs, rest[:, 0], rest[:, 1] > 0.5, rest[:, 2] > 0.5, info

    def _goal_reward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(reward, reached) of the current states: the goal env's ``compute_reward`` / success, batched in torch."""
        distance = torch.linalg.vector_norm(self._qpos[:, :2] - self._goal, dim=1)
        reached = distance < self._success_radius
        return (reached.float() - 1.0 if self._sparse else -distance), reached

    # ---------------------------------------------------------------- gym vector API

    def _warp_scope(self):
        return warp_scope(self._wp, self._wp_device, self._stream)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """All worlds start anew: at random starts and goals (seeded by ``seed``), at upstream's ``goal_cell`` /
        ``reset_cell`` options, or at exact ``goal`` / ``qpos`` / ``qvel`` states (module docstring)."""
        if seed is not None:
            self._generator.manual_seed(int(seed))
        everyone = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        options = dict(options or {})
        cells, exact = {"goal_cell", "reset_cell"}, {"goal", "qpos", "qvel"}
        if set(options) - cells - exact:
            raise ValueError(f"unknown reset options {sorted(set(options) - cells - exact)} (known: "
                             f"{sorted(cells | exact)})")
        if set(options) & exact and (not {"goal", "qpos"} <= set(options) or set(options) & cells):
            raise ValueError("reset options: an exact state needs 'goal' and 'qpos' (and optionally 'qvel'), "
                             "without 'goal_cell' / 'reset_cell'")
        self._autoreset[:] = False
        with self._warp_scope():
            if "qpos" in options:
                self._exact_states(options)
            else:
                xy = self._draw_starts(everyone, options.get("reset_cell"), options.get("goal_cell"))
                self._set_start_state(everyone, xy)
            zero = torch.zeros(self.num_envs, device=self.device)
            obs, _, _, _, info = self._outputs(zero, zero, zero, zero)
        return obs, info

    def step(self, actions):
        action = torch.as_tensor(np.asarray(actions), dtype=torch.float32, device=self.device)
        if action.shape != (self.num_envs, self._ctrl.shape[1]):
            raise ValueError(f"actions of shape {tuple(action.shape)}, expected {(self.num_envs, self._ctrl.shape[1])}")
        resetting = self._autoreset.clone()
        before = self._qpos.clone(), self._qvel.clone()
        with self._warp_scope():
            self._command.copy_(torch.maximum(torch.minimum(action, self._ctrl_high), self._ctrl_low))  # MuJoCo's clamp
            self._step_graph(self._substeps)
            diverged = self._bad & ~resetting
            self._steps += 1
            if diverged.any():  # back to the state before the step (module docstring)
                steps = self._steps.clone()
                self._set_start_state(diverged, None, before[0][diverged], before[1][diverged])
                self._steps.copy_(steps)
            self._set_start_state(resetting, self._draw_starts(resetting))
            reward, reached = self._goal_reward()
            terminated = reached & self._terminate_on_success & ~resetting & ~diverged
            truncated = ((self._steps >= self.max_episode_steps) | diverged) & ~resetting  # TimeLimit: not masked
            reward = torch.where(resetting, torch.zeros_like(reward), reward)
            self._autoreset = terminated | truncated
            return self._outputs(reward, terminated, truncated, diverged)

    def _substeps(self) -> None:
        """``frame_skip`` mujoco-warp steps of all worlds under ``self._command``; ``self._bad``: which diverged."""
        self._ctrl.copy_(self._command)
        bad = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        for _ in range(self._frame_skip):
            self._mjw.step(self._model, self._data)
            bad |= ~(self._qacc.abs() <= MJ_MAXVAL).all(dim=1)  # NaN compares False
        if self._contact_forces:
            self._mjw.rne_postconstraint(self._model, self._data)  # cfrc_ext, as Gymnasium after mj_step
        bad |= ~torch.isfinite(self._qpos).all(dim=1) | ~torch.isfinite(self._qvel).all(dim=1)
        self._bad.copy_(bad)

    def close_extras(self, **kwargs: Any) -> None:
        self.cpu_env.close()
