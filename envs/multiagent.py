"""PettingZoo **parallel** games as one Gymnasium ``VectorEnv`` of agent-major rows over several copies.

One rlkit agent (DQN with one shared network, say) then acts for every agent of every copy in one forward
pass, and rlkit's collector and replay buffer train on the rows unchanged: each row is one agent's stream,
exactly as a sub-env of a single-agent vector env is.

Rows
    ``rows = len(possible_agents) * copies``, agent-major: ``row = agent_index * copies + copy``, so
    ``num_envs`` is the number of rows; ``single_observation_space`` / ``single_action_space`` are the
    per-agent spaces, which must be the same for every agent (a game whose agents have different spaces is
    refused with one error: pad them first, e.g. SuperSuit's ``pad_observations_v0`` / ``pad_action_space_v0``).
    ``info["agent_id"]`` (``[rows]`` int64) says whose row it is, and where the game has them
    ``info["action_mask"]`` (``[rows, n]`` bool; all True on rows that do not act) carries the masks, read
    from a Dict observation's ``"action_mask"`` key (PettingZoo classic's form) or from the agent's info.

Autoreset (Gymnasium's NEXT_STEP, per copy, as :mod:`rlkit.training.collector` expects)
    * A copy resets on the step *after* all its agents are done; that step ignores the copy's actions and
      returns its reset observations (reward 0, not done): every row of the copy is then on its autoreset step.
    * An agent that finishes early (terminated / truncated, removed from ``env.agents``) reports the flags on
      its last real step, with that step's reward in its row and its final observation; then on *every*
      following step until its copy resets it reports the same flags again, reward 0, the same final
      observation, and its action is ignored. The collector takes each of those steps as an autoreset step
      (not a transition, not an episode) and the replay never samples them, while the real last step still
      bootstraps (truncation) or not (termination) from the true final observation, as in a single env.
    * An agent that joins late (not in ``env.agents`` at reset) is an inactive row until it appears: it reports
      ``terminated=True``, reward 0 and a placeholder observation (zeros clipped into the space), and the step
      on which it first appears is its autoreset step, returning its first observation. ``reset()`` returns
      ``info["inactive"]`` (``[rows]`` bool) so that the collector starts those rows as autoreset rows.
      (A reward the game gives an agent on the step it appears, before it has acted, is dropped.)
    * An agent that leaves ``env.agents`` without either flag is taken as terminated.

    Returns reported per row are per-agent returns: an episode in rlkit's records is one agent's episode
    (pistonball gives every piston the same team reward, so there the per-agent return is the team's).

Observations (per agent, before batching)
    * Images (``uint8`` ``H x W x C`` or ``H x W``): optionally grey (``grayscale=True``), resized to
      ``frame_size x frame_size`` with ``cv2.INTER_AREA`` (as the Atari envs are), channel-first ``uint8``
      and stacked over the last ``frame_stack`` steps (oldest first, padded by repeating the first frame),
      i.e. ``[frame_stack * C, S, S]``: rlkit's DQN then encodes them with its Nature CNN.
      PettingZoo's butterfly games draw the screen their observations are cut from only when they render: made
      with ``render_mode=None`` pistonball's observations never change (the ball is invisible) although
      ``parallel_api_test`` passes. :func:`make_parallel_rows` therefore makes image games that offer
      ``"rgb_array"`` with it, and :class:`ParallelEnvRows` warns about such a game made without a render mode.
    * Vectors (any other ``Box``): ``float32``; flattened when the agent id is appended.
    * ``agent_id_input`` (default: True when the game has more than one agent) gives the shared network the
      agent's id: vectors get a one-hot of the agent index appended; images get one extra constant plane of
      value ``(id + 1) / n_agents`` (stored as ``round(255 * (id + 1) / n_agents)``: the CNN divides by 255).
      One plane rather than ``n_agents`` one-hot planes because the replay stores every plane of every row
      (20 pistons would multiply pistonball's bytes by ~11); a constant plane is a per-agent offset on the first
      conv layer's feature maps, enough for the network to tell agents apart, and ``id + 1`` keeps every
      agent's plane distinct from an all-black (zero) one. The plane comes last, after the stacked frames, so
      the replay's own frame stacking (``train.replay.frame_stack``) does not apply: use this wrapper's
      ``frame_stack`` and ``train.replay.frame_stack: 1``.

Resume (exact)
    Copy ``c`` is seeded ``seed + c`` by ``reset(seed=...)``; later episodes follow from each game's own RNG. Each
    copy keeps how its current episode began (the seed, or its game's RNG state just before the reset) and the
    row actions it has played since: :meth:`ParallelEnvRows.replay_state` is that log (JSON text, no pickled
    objects) and :meth:`ParallelEnvRows.restore_replay` replays it into fresh games, so a checkpointed run resumes
    with every game exactly where it was (the collector's env replay calls them; it warns if a game does not
    reproduce its observations, i.e. is not deterministic given its RNG). A game whose ``reset`` leaves some state
    from the episode before names it in ``carry_over`` (dotted scalar attributes of its unwrapped game, recorded
    with each episode's start and set back before a replayed reset): knights-archers-zombies keeps its zombie-spawn
    timer (``zombie_spawn_interval._current_step``) across resets, so its registered id lists it.

Registered ids (``envs/__init__.py``): ``rlkit/Pistonball-v0`` (discrete pistons, 84x84 grey) and
``rlkit/KnightsArchersZombies-v0`` (its vector state), made with ``gymnasium.make_vec(id, num_envs=copies,
vectorization_mode="vector_entry_point")``; ``env.num_envs`` in a config is the number of copies. Any other
parallel game: ``ParallelEnvRows([lambda: my_game.parallel_env() for _ in range(copies)], ...)``.

PettingZoo is imported only here, and only when such an env is made.
"""

from __future__ import annotations

import importlib
import json
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

__all__ = ["ParallelEnvRows", "make_parallel_rows"]


def _is_image(space: gym.Space) -> bool:
    return (isinstance(space, spaces.Box) and space.dtype == np.uint8
            and (len(space.shape) == 2 or (len(space.shape) == 3 and space.shape[2] in (1, 3, 4))))


class ParallelEnvRows(VectorEnv):
    """``len(possible_agents) * len(env_fns)`` agent-major rows over the copies ``env_fns`` make (see the module
    docstring for the row, autoreset and observation conventions)."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, env_fns: Sequence[Callable[[], Any]], *, agent_id_input: bool | None = None,
                 frame_size: int | None = None, grayscale: bool = False, frame_stack: int = 1,
                 carry_over: Sequence[str] = ()) -> None:
        if len(env_fns) < 1:
            raise ValueError("ParallelEnvRows needs at least one env copy")
        if frame_size is not None and frame_size < 8:
            raise ValueError(f"frame_size must be >= 8 or None, got {frame_size}")
        if frame_stack < 1:
            raise ValueError(f"frame_stack must be >= 1, got {frame_stack}")
        self.envs = [fn() for fn in env_fns]
        self.carry_over = tuple(carry_over)
        for path in self.carry_over:
            _scalar_at(_game(self.envs[0]), path)  # a wrong path fails here, not in a checkpoint
        self.copies = len(self.envs)
        self.possible_agents = list(self.envs[0].possible_agents)
        self.n_agents = len(self.possible_agents)
        self._index = {agent: i for i, agent in enumerate(self.possible_agents)}
        self.num_envs = self.n_agents * self.copies
        self.agent_id_input = self.n_agents > 1 if agent_id_input is None else bool(agent_id_input)
        self.frame_size, self.grayscale, self.frame_stack = frame_size, bool(grayscale), int(frame_stack)

        obs_space, act_space = self._common_spaces()
        self._mask_in_obs = isinstance(obs_space, spaces.Dict)
        if self._mask_in_obs:
            if set(obs_space.spaces) != {"observation", "action_mask"}:
                raise ValueError(f"ParallelEnvRows takes Box observations or Dict(observation, action_mask); "
                                 f"the game has {obs_space}")
            obs_space = obs_space["observation"]
        if not isinstance(obs_space, spaces.Box):
            raise ValueError(f"ParallelEnvRows takes Box observations; the game has {obs_space}")
        self._image = _is_image(obs_space)
        if not self._image and (frame_size is not None or grayscale or frame_stack > 1):
            raise ValueError("frame_size, grayscale and frame_stack apply to image observations (uint8 HxWxC); "
                             f"the game's are {obs_space}")
        if self._image and _draws_only_when_rendering(self.envs[0]):
            warnings.warn(f"{type(self.envs[0]).__name__}: an image-observation game made with render_mode=None; "
                          "PettingZoo's butterfly games redraw the screen their observations are cut from only when "
                          "rendering (pistonball's never change otherwise): make it with render_mode='rgb_array' "
                          "(make_parallel_rows does)", stacklevel=2)
        self._raw_space = obs_space
        self.single_observation_space = self._processed_space(obs_space)
        self.single_action_space = act_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        # the agents' names, index = agent id: what rlkit's agent.policies resolves team names against
        self.metadata = {**type(self).metadata, "agents": tuple(self.possible_agents)}
        self.agent_ids = np.repeat(np.arange(self.n_agents, dtype=np.int64), self.copies)  # [rows]

        n = self.num_envs
        self._obs = np.zeros((n, *self.single_observation_space.shape), dtype=self.single_observation_space.dtype)
        self._placeholder = np.clip(np.zeros(self.single_observation_space.shape),
                                    self.single_observation_space.low,
                                    self.single_observation_space.high).astype(self.single_observation_space.dtype)
        self._frames: list[deque] = [deque(maxlen=self.frame_stack) for _ in range(n)]
        self._active = np.zeros(n, dtype=bool)          # the row's agent is in its copy's env.agents
        self._done_flags = np.zeros((n, 2), dtype=bool)  # (terminated, truncated) an inactive row reports
        self._reset_next = np.zeros(self.copies, dtype=bool)
        # per copy: how its episode began ({"seed": s} or {"rng": state}) and its rows' actions since (exact resume)
        self._episode_log: list[dict[str, Any]] = [{"start": None, "actions": []} for _ in range(self.copies)]
        self._mask: np.ndarray | None = None
        if isinstance(act_space, spaces.Discrete):
            self._mask = np.ones((n, int(act_space.n)), dtype=bool) if self._mask_in_obs else None

    # ------------------------------------------------------------------ spaces and observations

    def _common_spaces(self) -> tuple[gym.Space, gym.Space]:
        env = self.envs[0]
        obs_spaces = [env.observation_space(a) for a in self.possible_agents]
        act_spaces = [env.action_space(a) for a in self.possible_agents]
        for what, found in (("observation", obs_spaces), ("action", act_spaces)):
            if any(s != found[0] for s in found[1:]):
                differ = next(a for a, s in zip(self.possible_agents, found) if s != found[0])
                raise ValueError(
                    f"ParallelEnvRows needs one {what} space for all agents (one shared network acts for every row), "
                    f"but {self.possible_agents[0]} has {found[0]} and {differ} has "
                    f"{found[self.possible_agents.index(differ)]}; pad them to one space first (e.g. SuperSuit's "
                    "pad_observations_v0 / pad_action_space_v0)")
        return obs_spaces[0], act_spaces[0]

    def _frame_shape(self, raw: spaces.Box) -> tuple[int, int, int]:
        h, w = raw.shape[:2]
        c = 1 if len(raw.shape) == 2 else raw.shape[2]
        if self.grayscale:
            c = 1
        if self.frame_size is not None:
            h = w = self.frame_size
        return c, h, w

    def _processed_space(self, raw: spaces.Box) -> spaces.Box:
        if self._image:
            c, h, w = self._frame_shape(raw)
            channels = c * self.frame_stack + (1 if self.agent_id_input else 0)
            return spaces.Box(0, 255, (channels, h, w), dtype=np.uint8)
        low, high = raw.low.astype(np.float32), raw.high.astype(np.float32)
        if self.agent_id_input:
            low = np.concatenate([low.ravel(), np.zeros(self.n_agents, np.float32)])
            high = np.concatenate([high.ravel(), np.ones(self.n_agents, np.float32)])
        return spaces.Box(low, high, dtype=np.float32)

    def _frame(self, obs: np.ndarray) -> np.ndarray:
        """One raw image -> ``[C, S, S]`` uint8."""
        import cv2

        frame = np.asarray(obs, dtype=np.uint8)
        if frame.ndim == 3 and self.grayscale:
            frame = frame[..., 0] if frame.shape[2] == 1 else cv2.cvtColor(
                np.ascontiguousarray(frame[..., :3]), cv2.COLOR_RGB2GRAY)
        if self.frame_size is not None and frame.shape[:2] != (self.frame_size, self.frame_size):
            frame = cv2.resize(frame, (self.frame_size, self.frame_size), interpolation=cv2.INTER_AREA)
        return frame[None] if frame.ndim == 2 else np.transpose(frame, (2, 0, 1))

    def _observe(self, row: int, raw: Any, first: bool) -> None:
        """Store the processed observation of ``row`` (``first``: the episode's first, refills the frame stack)."""
        if self._mask_in_obs:
            self._mask[row] = np.asarray(raw["action_mask"], dtype=bool)
            raw = raw["observation"]
        agent = row // self.copies
        if self._image:
            frame = self._frame(raw)
            stack = self._frames[row]
            if first:
                stack.clear()
                stack.extend([frame] * self.frame_stack)
            else:
                stack.append(frame)
            out = self._obs[row]
            k = frame.shape[0]
            for i, f in enumerate(stack):
                out[i * k:(i + 1) * k] = f
            if self.agent_id_input:
                out[-1] = round(255 * (agent + 1) / self.n_agents)
        else:
            vec = np.asarray(raw, dtype=np.float32)
            if self.agent_id_input:
                vec = np.concatenate([vec.ravel(), np.eye(self.n_agents, dtype=np.float32)[agent]])
            self._obs[row] = vec

    def _info_mask(self, row: int, info: Any) -> None:
        if not self._mask_in_obs and isinstance(info, dict) and "action_mask" in info:
            if self._mask is None:
                self._mask = np.ones((self.num_envs, int(self.single_action_space.n)), dtype=bool)
            self._mask[row] = np.asarray(info["action_mask"], dtype=bool)

    def _infos(self) -> dict[str, Any]:
        infos: dict[str, Any] = {"agent_id": self.agent_ids.copy()}
        if self._mask is not None:
            mask = self._mask.copy()
            mask[~self._active] = True  # rows that do not act: their action is ignored
            infos["action_mask"] = mask
        return infos

    # ------------------------------------------------------------------ reset and step

    def _reset_copy(self, c: int, seed: int | None, options: dict | None) -> None:
        rng = getattr(_game(self.envs[c]), "np_random", None)
        start = {"seed": seed} if seed is not None else {
            "rng": None if rng is None else json.dumps(rng.bit_generator.state)}
        start["carry_over"] = {path: _scalar_at(_game(self.envs[c]), path) for path in self.carry_over}
        self._episode_log[c] = {"start": start, "options": options, "actions": []}
        obs, infos = self.envs[c].reset(seed=seed, options=options)
        present = set(self.envs[c].agents)
        for i, agent in enumerate(self.possible_agents):
            row = i * self.copies + c
            self._active[row] = agent in present
            self._done_flags[row] = (agent not in present, False)  # a late joiner reports terminated until it joins
            if agent in present:
                self._observe(row, obs[agent], first=True)
                self._info_mask(row, infos.get(agent))
            else:
                self._obs[row] = self._placeholder
        self._reset_next[c] = not present

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + c for c in range(self.copies)]
        else:
            seeds = list(seed)
            if len(seeds) != self.copies:
                raise ValueError(f"reset got {len(seeds)} seeds for {self.copies} env copies")
        for c in range(self.copies):
            self._reset_copy(c, seeds[c], options)
        infos = self._infos()
        infos["inactive"] = ~self._active
        return self._obs.copy(), infos

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions)
        if actions.shape[:1] != (self.num_envs,):
            raise ValueError(f"step takes one action per row: shape ({self.num_envs}, ...), got {actions.shape}")
        rewards = np.zeros(self.num_envs, dtype=np.float32)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        for c in range(self.copies):
            if self._reset_next[c]:  # all its agents were done on the previous step: this step resets it
                self._reset_copy(c, None, None)
                rows = np.arange(self.n_agents) * self.copies + c
                terminated[rows], truncated[rows] = self._done_flags[rows, 0], self._done_flags[rows, 1]
                continue
            self._step_copy(c, actions, rewards, terminated, truncated)
        return self._obs.copy(), rewards, terminated, truncated, self._infos()

    def _step_copy(self, c: int, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
                   truncated: np.ndarray) -> None:
        """One step of copy ``c`` with the rows' ``actions``; writes its rows of the other arrays."""
        env = self.envs[c]
        own_rows = np.arange(self.n_agents) * self.copies + c
        self._episode_log[c]["actions"].append(actions[own_rows].tolist())
        acting = {agent: self._env_action(actions[self._index[agent] * self.copies + c]) for agent in env.agents}
        obs, rew, term, trunc, infos = env.step(acting)
        present = set(env.agents)
        for i, agent in enumerate(self.possible_agents):
            row = i * self.copies + c
            if self._active[row]:  # a real step of this agent
                if agent in obs:
                    self._observe(row, obs[agent], first=False)
                    self._info_mask(row, infos.get(agent))
                rewards[row] = float(rew.get(agent, 0.0))
                t, u = bool(term.get(agent, False)), bool(trunc.get(agent, False))
                if agent not in present and not (t or u):
                    t = True  # left the game without a flag: nothing to bootstrap from
                if t or u:
                    self._active[row] = False
                    self._done_flags[row] = (t, u)
                terminated[row], truncated[row] = t, u
            elif agent in present and agent in obs:  # joins: this step is its autoreset step
                self._active[row] = True
                self._observe(row, obs[agent], first=True)
                self._info_mask(row, infos.get(agent))
            else:  # finished earlier or not yet joined: repeat the flags, reward 0, the same observation
                terminated[row], truncated[row] = self._done_flags[row]
        self._reset_next[c] = not present

    # ------------------------------------------------------------------ exact resume

    def replay_state(self) -> str:
        """How each copy's current episode began and the row actions played since, as JSON text."""
        return json.dumps(self._episode_log)

    def restore_replay(self, state: str) -> np.ndarray:
        """Replay :meth:`replay_state`'s log into the games: each copy is reset as its episode was (same seed or
        RNG state) and steps through the same actions. Returns the observations (as the last step returned)."""
        log = json.loads(state)
        if not isinstance(log, list) or len(log) != self.copies:
            raise ValueError(f"env replay state holds {len(log) if isinstance(log, list) else '?'} copies, this env "
                             f"has {self.copies}")
        n = self.num_envs
        scratch = (np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool))
        for c, entry in enumerate(log):
            start = entry.get("start") or {}
            rng_state, game = start.get("rng"), _game(self.envs[c])
            if rng_state is not None:
                game.np_random = np.random.default_rng()
                game.np_random.bit_generator.state = json.loads(rng_state)
            for path, value in (start.get("carry_over") or {}).items():
                if path not in self.carry_over:
                    raise ValueError(f"env replay state sets {path!r}, which this env does not carry over")
                _set_scalar_at(game, path, value)
            self._reset_copy(c, start.get("seed"), entry.get("options"))
            self._episode_log[c]["start"] = start  # the log keeps the episode's own start, not the replay's
            for played in entry["actions"]:
                row_actions = np.zeros((n, *self.single_action_space.shape), dtype=self.single_action_space.dtype)
                rows = np.arange(self.n_agents) * self.copies + c
                row_actions[rows] = np.asarray(played, dtype=self.single_action_space.dtype)
                if not all(self.single_action_space.contains(a) for a in row_actions[rows]):
                    raise ValueError(f"env replay action {played!r} of copy {c} is not in {self.single_action_space}")
                self._step_copy(c, row_actions, *scratch)
        return self._obs.copy()

    def _env_action(self, action: np.ndarray) -> Any:
        if isinstance(self.single_action_space, spaces.Discrete):
            return int(action)
        return np.asarray(action, dtype=self.single_action_space.dtype)

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()


def _game(env: Any) -> Any:
    """The game under PettingZoo's wrappers (its ``unwrapped``), or ``env`` itself for a bare duck-typed game."""
    return getattr(env, "unwrapped", env)


def _scalar_at(obj: Any, path: str) -> Any:
    for name in path.split("."):
        obj = getattr(obj, name)
    if not isinstance(obj, (bool, int, float, str)):
        raise ValueError(f"carry_over {path!r} is a {type(obj).__name__}, not a scalar (int, float, bool, str)")
    return obj


def _set_scalar_at(obj: Any, path: str, value: Any) -> None:
    *parents, name = path.split(".")
    for parent in parents:
        obj = getattr(obj, parent)
    setattr(obj, name, value)


def _draws_only_when_rendering(env: Any) -> bool:
    """Whether a PettingZoo game made without a render mode may show stale observations: PettingZoo's butterfly
    games (pistonball, cooperative pong, KAZ's pixel mode) cut each agent's observation from their screen, which
    they redraw only when ``render_mode`` is set; with ``render_mode=None`` pistonball's observations never change
    (the ball is invisible) and cooperative pong's stay the reset frame, while ``parallel_api_test`` passes."""
    return getattr(env, "render_mode", None) is None and "rgb_array" in env.metadata.get("render_modes", ())


def _load(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name or "parallel_env")


def make_parallel_rows(num_envs: int = 1, *, parallel_env: str, env_kwargs: dict[str, Any] | None = None,
                       agent_id_input: bool | None = None, frame_size: int | None = None, grayscale: bool = False,
                       frame_stack: int = 1, render_mode: str | None = None, carry_over: Sequence[str] = (),
                       **extra: Any) -> ParallelEnvRows:
    """Gymnasium's ``vector_entry_point`` for the rlkit multi-agent ids: ``num_envs`` copies of the PettingZoo
    game ``parallel_env`` (``"module:function"``, e.g. ``"pettingzoo.butterfly.pistonball_v6:parallel_env"``)
    made with ``env_kwargs`` (plus any other keyword, e.g. ``max_cycles``), as agent-major rows."""
    if render_mode is not None:
        raise ValueError("the multi-agent row envs do not render; make the PettingZoo game itself to watch it")
    factory = _load(parallel_env)
    kwargs = {**(env_kwargs or {}), **extra}
    if "render_mode" not in kwargs:  # a pixel game draws the frames it observes only when it renders
        probe = factory(**kwargs)
        try:
            if _is_image(probe.observation_space(probe.possible_agents[0])) and _draws_only_when_rendering(probe):
                kwargs["render_mode"] = "rgb_array"
        finally:
            probe.close()
    return ParallelEnvRows([lambda: factory(**kwargs) for _ in range(num_envs)], agent_id_input=agent_id_input,
                           frame_size=frame_size, grayscale=grayscale, frame_stack=frame_stack, carry_over=carry_over)
