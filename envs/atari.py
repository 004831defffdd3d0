"""Atari 2600 games under the standard DQN protocol, over ALE v5.

Every game ALE ships is registered as ``rlkit/{Game}-v0`` (``rlkit/Pong-v0``,
``rlkit/MsPacman-v0``, ...; see :func:`atari_game_ids`).  One id builds two things
with the same keyword arguments::

    env = gymnasium.make("rlkit/Pong-v0", render_mode="rgb_array")      # evaluation, video
    envs = gymnasium.make_vec("rlkit/Pong-v0", num_envs=8,
                              vectorization_mode="vector_entry_point")  # training

The single env is ALE's ``AtariEnv`` (frameskip 1) under Gymnasium's
``AtariPreprocessing`` and ``FrameStackObservation``; the vector env is ALE's native,
threaded C++ ``AtariVectorEnv`` doing the same preprocessing.  Both end in a thin rlkit
layer (:class:`AtariInfo`, :class:`AtariVecEnv`) that gives them one contract.

Protocol
--------
Mnih et al. 2015, "Human-level control through deep reinforcement learning" (Nature 518),
with the evaluation recommendations of Machado et al. 2018, "Revisiting the Arcade
Learning Environment" (JAIR 61): each agent step repeats the action for ``frame_skip``
emulator frames and max-pools the last two; frames are converted to grayscale, resized to
``screen_size`` x ``screen_size`` (``cv2.INTER_AREA``) and the last ``frame_stack`` are
stacked; an episode starts with a random number of no-ops (at most ``noop_max``); an
episode is one whole game, cut at ``max_episode_steps`` agent steps (27,000 = 108,000
frames = 30 minutes of play).

=========================  ===================================================================
keyword (default)          ALE setting
=========================  ===================================================================
``frame_skip=4``           vector ``frameskip``; single ``AtariPreprocessing(frame_skip)`` over
                           ``AtariEnv(frameskip=1)``.  Max-pool over the last 2 frames always.
``screen_size=84``         vector ``img_height = img_width``; single ``screen_size``.
``frame_stack=4``          vector ``stack_num``; single ``FrameStackObservation``.
``noop_max=30``            both ``noop_max`` (0 turns it off).  Natively 0..noop_max-1
                           single-frame no-ops, in Gymnasium 1..noop_max: "at most 30".
``sticky_actions=False``   ``repeat_action_probability`` 0.25 if True else 0.0 (per frame,
                           inside ALE, seeded by ``reset(seed=...)``).
``full_action_space``      ``full_action_space`` (18 actions instead of the game's minimal set).
``max_episode_steps``      vector ``max_num_frames_per_episode = max_episode_steps*frame_skip``
(27000 agent steps)        (ALE counts frames of agent steps, not the reset no-ops); single:
                           Gymnasium's ``TimeLimit`` (added by ``gymnasium.make`` from the
                           registered spec; ``make(..., max_episode_steps=N)`` overrides it).
                           Either way ``truncated=True`` on exactly the N-th agent step.
``use_fire_reset=False``   vector ``use_fire_reset``; single :class:`FireOnReset`.  When True and
                           the game has FIRE, one FIRE frame is played right after the game
                           reset (before the no-ops).  Off by default: Machado et al. ask for
                           no game-specific knowledge, and since an episode is a whole game
                           (see life loss) it would only launch the first ball anyway; the
                           agent has to learn FIRE for the later lives.
``clip_rewards=True``      rlkit wrapper: ``reward = sign(raw)``.  Native ``reward_clipping``
                           is always False (it would drop the raw score).
``terminal_on_life_loss``  rlkit wrapper: ``info["life_loss"]`` (below).  Native
(False)                    ``episodic_life`` and ``life_loss_info`` are always False.
``num_threads=0``          vector only: ALE's worker threads (0 = ALE decides).
=========================  ===================================================================

Contract (both paths; vector values are arrays of shape ``(num_envs,)``)
-------------------------------------------------------------------------
* **Observations** are ``uint8`` of shape ``(frame_stack, screen_size, screen_size)``
  (vector: ``(num_envs, frame_stack, screen_size, screen_size)``), oldest frame first.
* **Padding: repeat the first frame.**  Right after a reset (explicit or automatic) the stack
  is ``[f0, f0, f0, f0]``, then ``[f0, f0, f0, f1]``, ``[f0, f0, f1, f2]``, ... where ``f0``
  is the reset frame.  This is what Gymnasium's ``FrameStackObservation`` does by default
  (``padding_type="reset"``) and what the replay buffer assumes when it rebuilds stacks from
  single frames.  The native ALE vector env instead pads with **zeros** (its C++ frame stack
  is cleared at reset); :class:`AtariVecEnv` overwrites the zero slots with ``f0`` for the
  first ``frame_stack - 1`` steps after each reset, touching only the envs that need it.
* **Rewards** are ``sign(raw)`` when ``clip_rewards`` (else the raw score change), as float
  (vector: ``float32``).  ``info["raw_reward"]`` always holds the unclipped reward, so game
  scores are ``sum(info["raw_reward"])`` over an episode.
* **Info keys** (reset and step): ``lives``, ``frame_number``, ``episode_frame_number`` (from
  ALE), ``raw_reward`` (0 at reset) and ``life_loss`` (False at reset).  See ``INFO_KEYS``.
* **Life loss never ends an episode** and never resets the game: episodes stay whole games,
  so returns are game scores.  With ``terminal_on_life_loss=True``, ``info["life_loss"]`` is
  True on exactly the steps where ALE's lives counter went down (including the final
  game-over step, where ``terminated`` is also True); the training loop cuts the bootstrap
  there (``done = terminated | life_loss``).  With ``terminal_on_life_loss=False`` the key is
  present but always False, so the loop can use that expression unconditionally.
  Why not ALE's own flags (checked on ale-py 0.12.1): natively ``episodic_life=True`` returns
  ``terminated=True`` on a lost life and the NEXT_STEP autoreset then restarts the *whole
  game* (lives back to 5 in Breakout), so the agent never sees a later life and returns are
  not game scores; ``life_loss_info=True`` returns ``terminated=True`` on a lost life but does
  *not* reset, which breaks Gymnasium's rule that a terminated env is reset on the next step.
  Neither gives the contract above, so the flag is computed here from ``info["lives"]``.
* **Autoreset (vector)**: Gymnasium ``NEXT_STEP``.  After a step that returns
  ``terminated[e] or truncated[e]``, the next ``step()`` ignores ``actions[e]``, resets env
  ``e`` and returns its reset observation (padded as above) with ``reward 0``,
  ``terminated=truncated=False``, ``raw_reward 0`` and ``life_loss False``.
* **Seeding**: ``reset(seed=s)`` seeds the vector's sub-envs with ``s, s+1, ...`` (ALE's
  emulator, sticky-action and no-op generators); the same seed and actions give the same
  observations and rewards.  The single env's ``reset(seed=s)`` seeds ALE and the no-ops.

* **Actions (vector)** may be any int array-like of shape ``(num_envs,)``; out-of-range
  actions raise ``ValueError`` (natively they make the worker thread throw and ``step()``
  hang forever).

The single env also forwards ``render_mode="rgb_array"`` (full-resolution RGB frames) for
video.  Dynamics of the two paths are the same protocol but not bit-identical (different
no-op draws); shapes, dtypes, spaces, info keys and padding are identical.
"""

from __future__ import annotations

import difflib
from typing import Any

import ale_py.roms
import gymnasium as gym
import numpy as np
from ale_py.env import AtariEnv
from ale_py.vector_env import AtariVectorEnv
from gymnasium.vector import AutoresetMode, VectorWrapper
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation, TimeLimit

# ROMs without a single-player mode; ALE registers no ``ALE/{Game}-v5`` for them either.
_MULTIPLAYER_ONLY = frozenset({"combat", "joust", "maze_craze", "warlords"})

#: snake_case ROM ids of every registered game ("pong", "ms_pacman", ...). Reads ALE's
#: ROM checksum list only; no ROM is loaded.
ATARI_GAMES: tuple[str, ...] = tuple(
    sorted(g for g in ale_py.roms.get_all_rom_ids() if g not in _MULTIPLAYER_ONLY)
)

#: 108,000 frames / frame skip 4: 30 minutes of play (Machado et al. 2018).
MAX_EPISODE_STEPS = 27_000

#: Info keys present on every reset and step, in both paths.
INFO_KEYS = ("lives", "frame_number", "episode_frame_number", "raw_reward", "life_loss")

STICKY_ACTION_PROBABILITY = 0.25

# Native truncation counts frames in an int; "no limit" is the largest one.
_NO_FRAME_LIMIT = 2**31 - 1


def atari_env_name(game: str) -> str:
    """CamelCase name of a snake_case ROM id, as in ALE's own ids: ``ms_pacman`` -> ``MsPacman``."""
    return game.title().replace("_", "")


def atari_env_id(game: str) -> str:
    """The rlkit id of a game: ``pong`` -> ``rlkit/Pong-v0``."""
    return f"rlkit/{atari_env_name(resolve_game(game))}-v0"


def atari_game_ids() -> list[str]:
    """Every registered rlkit Atari id, ``["rlkit/Adventure-v0", ..., "rlkit/Zaxxon-v0"]``."""
    return [f"rlkit/{atari_env_name(g)}-v0" for g in ATARI_GAMES]


def resolve_game(name: str) -> str:
    """Return the snake_case ROM id for ``name``: a ROM id (``"ms_pacman"``), a CamelCase name
    (``"MsPacman"``) or an id (``"rlkit/MsPacman-v0"``, ``"ALE/MsPacman-v5"``).

    Raises ``ValueError`` naming the bad value and the closest valid game.
    """
    if name in ATARI_GAMES:
        return name
    by_name = {atari_env_name(g): g for g in ATARI_GAMES}
    stripped = name.split("/")[-1].split("-v")[0]
    if stripped in by_name:
        return by_name[stripped]
    candidates = list(ATARI_GAMES) + list(by_name)
    close = difflib.get_close_matches(stripped, candidates, n=1, cutoff=0.0)
    hint = f"; did you mean {close[0]!r} ({atari_env_id(close[0])})?" if close else ""
    raise ValueError(
        f"unknown Atari game {name!r}{hint} Valid games: ATARI_GAMES or atari_game_ids()."
    )


def _check_kwargs(
    *, noop_max: int, frame_skip: int, screen_size: int, frame_stack: int, max_episode_steps: int | None
) -> None:
    for key, value, low in (
        ("noop_max", noop_max, 0),
        ("frame_skip", frame_skip, 1),
        ("screen_size", screen_size, 1),
        ("frame_stack", frame_stack, 1),
    ):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{key} must be an int >= {low}, got {value!r}")
    if max_episode_steps is not None and (
        not isinstance(max_episode_steps, (int, np.integer)) or max_episode_steps < 1
    ):
        raise ValueError(f"max_episode_steps must be a positive int or None, got {max_episode_steps!r}")


# --------------------------------------------------------------------------- single env


class FireOnReset(gym.Wrapper):
    """Play one FIRE frame after each game reset, like ALE's native ``use_fire_reset``.

    Goes directly over ``AtariEnv(frameskip=1)``, under ``AtariPreprocessing``, so that the
    FIRE frame comes before the no-ops as it does natively.  A no-op for games without FIRE.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        self._fire = meanings.index("FIRE") if "FIRE" in meanings else None

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        if self._fire is not None:
            obs, _, terminated, truncated, info = self.env.step(self._fire)
            if terminated or truncated:  # never seen in practice; start over without FIRE
                obs, info = self.env.reset(**kwargs)
        return obs, info


class AtariInfo(gym.Wrapper):
    """Reward clipping with ``info["raw_reward"]``, and ``info["life_loss"]`` (module docstring)."""

    def __init__(self, env: gym.Env, *, clip_rewards: bool, terminal_on_life_loss: bool):
        super().__init__(env)
        self.clip_rewards = clip_rewards
        self.terminal_on_life_loss = terminal_on_life_loss
        self._lives = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, native = self.env.reset(**kwargs)
        self._lives = int(native["lives"])
        info = {key: native[key] for key in INFO_KEYS[:3]}  # same keys as the vector env
        info["raw_reward"] = 0.0
        info["life_loss"] = False
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, raw, terminated, truncated, info = self.env.step(action)
        raw = float(raw)
        lives = int(info["lives"])
        info["raw_reward"] = raw
        info["life_loss"] = self.terminal_on_life_loss and lives < self._lives
        self._lives = lives
        reward = float(np.sign(raw)) if self.clip_rewards else raw
        return obs, reward, terminated, truncated, info


def make_atari_env(
    game: str,
    *,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int = 84,
    frame_stack: int = 4,
    terminal_on_life_loss: bool = False,
    clip_rewards: bool = True,
    sticky_actions: bool = False,
    full_action_space: bool = False,
    use_fire_reset: bool = False,
    max_episode_steps: int | None = None,
    render_mode: str | None = None,
) -> gym.Env:
    """One Atari env under the rlkit protocol (entry point of ``rlkit/{Game}-v0``).

    ``max_episode_steps``: through ``gymnasium.make`` this argument is taken by ``make`` itself,
    which adds ``TimeLimit`` from the registered spec (27,000) or from the value given; called
    directly, pass it here to get the same ``TimeLimit`` (None: no limit).
    """
    game = resolve_game(game)
    _check_kwargs(
        noop_max=noop_max,
        frame_skip=frame_skip,
        screen_size=screen_size,
        frame_stack=frame_stack,
        max_episode_steps=max_episode_steps,
    )
    env: gym.Env = AtariEnv(
        game=game,
        obs_type="grayscale",  # AtariPreprocessing reads the screen itself; this is the cheap one
        frameskip=1,
        repeat_action_probability=STICKY_ACTION_PROBABILITY if sticky_actions else 0.0,
        full_action_space=full_action_space,
        max_num_frames_per_episode=None,
        render_mode=render_mode,
    )
    if use_fire_reset:
        env = FireOnReset(env)
    env = AtariPreprocessing(
        env,
        noop_max=noop_max,
        frame_skip=frame_skip,
        screen_size=screen_size,
        terminal_on_life_loss=False,
        grayscale_obs=True,
        scale_obs=False,
    )
    env = FrameStackObservation(env, frame_stack, padding_type="reset")
    env = AtariInfo(env, clip_rewards=clip_rewards, terminal_on_life_loss=terminal_on_life_loss)
    if max_episode_steps is not None:
        env = TimeLimit(env, max_episode_steps)
    return env


# --------------------------------------------------------------------------- vector env


class AtariVecEnv(VectorWrapper):
    """rlkit contract over ALE's native ``AtariVectorEnv`` (NEXT_STEP autoreset).

    Per step it only does O(num_envs) bookkeeping: reward sign, lives comparison, and the
    repeat-first-frame padding for the envs reset within the last ``frame_stack - 1`` steps.
    """

    def __init__(self, env: AtariVectorEnv, *, clip_rewards: bool, terminal_on_life_loss: bool):
        super().__init__(env)
        if env.autoreset_mode != AutoresetMode.NEXT_STEP or env.batch_size != env.num_envs:
            raise ValueError("AtariVecEnv needs a synchronous AtariVectorEnv with NEXT_STEP autoreset")
        self.clip_rewards = clip_rewards
        self.terminal_on_life_loss = terminal_on_life_loss
        n = env.num_envs
        self._stack = env.single_observation_space.shape[0]
        self._num_actions = env.single_action_space.n
        self._frames_since_reset = np.full(n, self._stack, dtype=np.int64)  # real frames, capped
        self._lives = np.zeros(n, dtype=np.int32)
        self._reset_next = np.zeros(n, dtype=bool)  # done last step: autoreset on this one
        self._no_life_loss = np.zeros(n, dtype=bool)

    def reset(
        self, *, seed: int | np.ndarray | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Reset all sub-envs, or those in ``options["reset_mask"]`` (ALE semantics)."""
        obs, info = self.env.reset(seed=seed, options=options)
        mask = slice(None) if options is None or "reset_mask" not in options else options["reset_mask"]
        self._frames_since_reset[mask] = 1
        self._reset_next[mask] = False
        self._lives = info["lives"].copy()
        self._pad(obs)
        n = self.num_envs
        return obs, self._info(info, np.zeros(n, dtype=np.float32), np.zeros(n, dtype=bool))

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        actions = np.asarray(actions)
        if actions.dtype != np.int64 and actions.dtype != np.int32:
            actions = actions.astype(np.int64)
        # ALE's worker thread throws on a bad action and step() then never returns: check here
        if actions.shape != (self.num_envs,) or actions.min() < 0 or actions.max() >= self._num_actions:
            raise ValueError(
                f"actions must be ints in [0, {self._num_actions}) of shape ({self.num_envs},), got {actions!r}"
            )
        obs, raw, terminated, truncated, info = self.env.step(actions)

        # padding: envs reset in this step hold 1 real frame, the others one more than before
        reset_now = self._reset_next
        np.minimum(self._frames_since_reset + 1, self._stack, out=self._frames_since_reset)
        self._frames_since_reset[reset_now] = 1
        self._pad(obs)

        lives = info["lives"]
        if self.terminal_on_life_loss:
            life_loss = (lives < self._lives) & ~reset_now
        else:
            life_loss = self._no_life_loss.copy()
        self._lives = lives
        self._reset_next = terminated | truncated

        raw = raw.astype(np.float32)
        reward = np.sign(raw) if self.clip_rewards else raw.copy()
        return obs, reward, terminated, truncated, self._info(info, raw, life_loss)

    def _pad(self, obs: np.ndarray) -> None:
        """Replace the native zero padding by copies of the first frame, in place."""
        for e in np.flatnonzero(self._frames_since_reset < self._stack):
            first = self._stack - self._frames_since_reset[e]  # index of the reset frame
            obs[e, :first] = obs[e, first]

    @staticmethod
    def _info(native: dict[str, np.ndarray], raw: np.ndarray, life_loss: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "lives": native["lives"],
            "frame_number": native["frame_number"],
            "episode_frame_number": native["episode_frame_number"],
            "raw_reward": raw,
            "life_loss": life_loss,
        }


def make_atari_vector_env(
    game: str,
    num_envs: int = 1,
    *,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int = 84,
    frame_stack: int = 4,
    terminal_on_life_loss: bool = False,
    clip_rewards: bool = True,
    sticky_actions: bool = False,
    full_action_space: bool = False,
    use_fire_reset: bool = False,
    max_episode_steps: int | None = MAX_EPISODE_STEPS,
    num_threads: int = 0,
) -> AtariVecEnv:
    """``num_envs`` Atari envs in ALE's threaded C++ vector env (vector entry point of
    ``rlkit/{Game}-v0``).  Same keywords as :func:`make_atari_env` plus ``num_threads``
    (0 = ALE decides); ``max_episode_steps=None`` means no limit."""
    game = resolve_game(game)
    _check_kwargs(
        noop_max=noop_max,
        frame_skip=frame_skip,
        screen_size=screen_size,
        frame_stack=frame_stack,
        max_episode_steps=max_episode_steps,
    )
    if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
    if not isinstance(num_threads, (int, np.integer)) or num_threads < 0:
        raise ValueError(f"num_threads must be an int >= 0, got {num_threads!r}")
    max_frames = _NO_FRAME_LIMIT if max_episode_steps is None else max_episode_steps * frame_skip
    native = AtariVectorEnv(
        game,
        num_envs,
        num_threads=num_threads,
        max_num_frames_per_episode=min(max_frames, _NO_FRAME_LIMIT),
        repeat_action_probability=STICKY_ACTION_PROBABILITY if sticky_actions else 0.0,
        full_action_space=full_action_space,
        autoreset_mode=AutoresetMode.NEXT_STEP,
        img_height=screen_size,
        img_width=screen_size,
        grayscale=True,
        stack_num=frame_stack,
        frameskip=frame_skip,
        maxpool=True,
        noop_max=noop_max,
        episodic_life=False,
        life_loss_info=False,
        reward_clipping=False,
        use_fire_reset=use_fire_reset,
    )
    return AtariVecEnv(native, clip_rewards=clip_rewards, terminal_on_life_loss=terminal_on_life_loss)
