"""Atari 2600 games under the DQN (Nature) protocol or Machado et al.'s, over ALE v5.

Every game ALE ships is registered as ``rlkit/{Game}-v0`` (``rlkit/Pong-v0``,
``rlkit/MsPacman-v0``, ...; see :func:`atari_game_ids`).  One id builds two things
with the same keyword arguments::

    env = gymnasium.make("rlkit/Pong-v0", render_mode="rgb_array")      # evaluation, video
    envs = gymnasium.make_vec("rlkit/Pong-v0", num_envs=8,
                              vectorization_mode="vector_entry_point")  # training

The single env is ALE's ``AtariEnv`` (frameskip 1) under rlkit's :class:`NoopStart` and
Gymnasium's ``AtariPreprocessing`` and ``FrameStackObservation``; the vector env is ALE's native,
threaded C++ ``AtariVectorEnv`` doing the same preprocessing.  Both end in a thin rlkit
layer (:class:`AtariInfo`, :class:`AtariVecEnv`) that gives them one contract.

Protocol
--------
Two named protocols, chosen with ``protocol=`` (default ``"nature"``); any keyword given
explicitly overrides the protocol's value for it.

``"nature"`` (default): the preprocessing and no-op starts of Mnih et al. 2015, "Human-level
control through deep reinforcement learning" (Nature 518): each agent step repeats the action
for ``frame_skip`` emulator frames and max-pools the last two; frames are converted to
grayscale, resized to ``screen_size`` x ``screen_size`` (``cv2.INTER_AREA``) and the last
``frame_stack`` are stacked; an episode starts with 1..``noop_max`` (uniform) single-frame
no-ops; deterministic emulator (no sticky actions), the game's minimal action set.  Two
deliberate differences from the paper: an episode is one whole game cut at
``max_episode_steps`` agent steps (27,000 = 108,000 frames = 30 minutes of play, the cap of
Hessel et al. 2018 and of ALE's own v5 ids; the Nature paper evaluated for at most 5 minutes:
pass ``max_episode_steps=4500``), and a lost life does not end the episode for the
learner unless ``terminal_on_life_loss=True`` (which the Nature agent used in training).

``"machado"``: the recommendations of Machado et al. 2018, "Revisiting the Arcade Learning
Environment: Evaluation Protocols and Open Problems for General Agents" (JAIR 61):
stochasticity from sticky actions (``repeat_action_probability=0.25``) instead of no-op
starts (``noop_max=0``), the full action set of 18 actions (``full_action_space=True``), the
episode ends at game over only (``terminal_on_life_loss=False``, no FIRE on reset: no
game-specific knowledge).  Preprocessing, reward clipping and the 108,000-frame cap are as
above.  The paper also asks that results be reported as the mean score of the last 100
training episodes: that is a matter for the report, not the env.

=========================  ===================================================================
keyword (nature, machado)  ALE setting
=========================  ===================================================================
``protocol="nature"``      ``"nature"`` or ``"machado"``: the defaults of the five keywords
                           marked (protocol) below.
``frame_skip=4``           vector ``frameskip``; single ``AtariPreprocessing(frame_skip)`` over
                           ``AtariEnv(frameskip=1)``.  Max-pool over the last 2 frames always.
``screen_size=84``         vector ``img_height = img_width``; single ``screen_size``.
``frame_stack=4``          vector ``stack_num``; single ``FrameStackObservation``.
``noop_max`` (protocol:    1..noop_max single-frame no-ops (uniform) after each game reset, 0
30, 0)                     turns them off.  Single: :class:`NoopStart` (ALE's NOOP, pressed
                           even in games whose minimal action set lacks it: Backgammon, Video
                           Checkers).  Vector: ALE's native no-ops, which draw 0..n-1 for
                           ``noop_max=n``; rlkit passes ``noop_max + 1`` and redraws the rare
                           0 (see :class:`AtariVecEnv`), so both paths draw 1..noop_max.
``sticky_actions``         ``repeat_action_probability`` 0.25 if True else 0.0 (per frame,
(protocol: False, True)    inside ALE, seeded by ``reset(seed=...)``).
``full_action_space``      ``full_action_space`` (18 actions instead of the game's minimal set).
(protocol: False, True)
``max_episode_steps``      vector ``max_num_frames_per_episode = max_episode_steps*frame_skip``
(27000 agent steps)        (ALE counts frames of agent steps, not the reset no-ops); single:
                           Gymnasium's ``TimeLimit`` (added by ``gymnasium.make`` from the
                           registered spec; ``make(..., max_episode_steps=N)`` overrides it).
                           Either way ``truncated=True`` on exactly the N-th agent step.
``use_fire_reset``         vector ``use_fire_reset``; single :class:`FireOnReset`.  When True and
(protocol: False, False)   the game has FIRE, one FIRE frame is played right after the game
                           reset, before the no-ops (1..noop_max of them after the FIRE frame,
                           in both paths).  Off by default: Machado et al. ask for no
                           game-specific knowledge, and since an episode is a whole game (see
                           life loss) it would only launch the first ball anyway; the agent
                           has to learn FIRE for the later lives.
``clip_rewards=True``      rlkit wrapper: ``reward = sign(raw)``.  Native ``reward_clipping``
                           is always False (it would drop the raw score).
``terminal_on_life_loss``  rlkit wrapper: ``info["life_loss"]`` (below).  Native
(protocol: False, False)   ``episodic_life`` and ``life_loss_info`` are always False.
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
import functools
from typing import Any

import ale_py.roms
import gymnasium as gym
import numpy as np
from ale_py import Action, ALEInterface, LoggerMode
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

#: The keywords each named protocol sets (module docstring, "Protocol"); explicit keywords win.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "nature": dict(noop_max=30, sticky_actions=False, full_action_space=False,
                   terminal_on_life_loss=False, use_fire_reset=False),
    "machado": dict(noop_max=0, sticky_actions=True, full_action_space=True,
                    terminal_on_life_loss=False, use_fire_reset=False),
}

# Redraws of a no-op count per reset before giving up: each succeeds with probability >= 1/2.
_MAX_NOOP_REDRAWS = 64

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


@functools.lru_cache(maxsize=None)
def _probe_rom(game: str) -> tuple[tuple[Action, ...], int]:
    ale = ALEInterface()
    ale.setLoggerMode(LoggerMode.Error)  # as AtariEnv does (the setting is process-wide)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(ale_py.roms.get_rom_path(game))
    ale.reset_game()
    return tuple(ale.getMinimalActionSet()), int(ale.getEpisodeFrameNumber())


def minimal_action_set(game: str) -> tuple[Action, ...]:
    """The game's minimal action set, as ALE lists it (loads the ROM once per game and process)."""
    return _probe_rom(resolve_game(game))[0]


def start_frames(game: str) -> int:
    """Frames ALE plays in its own game reset (the ROM's start-up actions), which
    ``episode_frame_number`` counts: 0 for most games, 134 for Name This Game.  Measured without
    sticky actions; with them Double Dunk's start-up varies (13..31 frames measured)."""
    return _probe_rom(resolve_game(game))[1]


def resolve_protocol(protocol: str, **given: Any) -> dict[str, Any]:
    """The protocol's keyword values (:data:`PROTOCOLS`), overridden by those ``given`` not None."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
    return {key: value if given.get(key) is None else given[key] for key, value in PROTOCOLS[protocol].items()}


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


class NoopStart(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """1..``noop_max`` (uniform) single-frame no-ops after each game reset (Mnih et al. 2015).

    Goes directly over ``AtariEnv(frameskip=1)`` (or :class:`FireOnReset`), under
    ``AtariPreprocessing(noop_max=0)``, which reads the screen itself after the reset.  It draws
    the count from the env's ``np_random`` right after the reset, as ``AtariPreprocessing``
    does, but presses ALE's NOOP directly: Gymnasium's wrapper steps action *index* 0, and
    refuses games whose minimal action set does not start with NOOP (Backgammon and Video
    Checkers, whose minimal sets have no NOOP at all); ALE accepts NOOP in every game, which is
    also what ALE's native vector env presses.  For every other game the frames are the same.
    """

    def __init__(self, env: gym.Env, noop_max: int):
        gym.utils.RecordConstructorArgs.__init__(self, noop_max=noop_max)  # env.spec can rebuild the stack
        super().__init__(env)
        self.noop_max = int(noop_max)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        if self.noop_max <= 0:
            return obs, info
        atari = self.env.unwrapped
        ale = atari.ale
        for _ in range(int(atari.np_random.integers(1, self.noop_max + 1))):
            ale.act(Action.NOOP)
            if ale.game_over():  # a game lost within 30 frames: start over (never seen in practice)
                self.env.reset()
        info = {**info, "lives": ale.lives(), "episode_frame_number": ale.getEpisodeFrameNumber(),
                "frame_number": ale.getFrameNumber()}
        return atari._get_obs(), info


class FireOnReset(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Play one FIRE frame after each game reset, like ALE's native ``use_fire_reset``.

    Goes directly over ``AtariEnv(frameskip=1)``, under ``AtariPreprocessing``, so that the
    FIRE frame comes before the no-ops as it does natively.  A no-op for games without FIRE.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
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


class AtariInfo(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Reward clipping with ``info["raw_reward"]``, and ``info["life_loss"]`` (module docstring)."""

    def __init__(self, env: gym.Env, *, clip_rewards: bool, terminal_on_life_loss: bool):
        gym.utils.RecordConstructorArgs.__init__(self, clip_rewards=clip_rewards,
                                                 terminal_on_life_loss=terminal_on_life_loss)
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
    protocol: str = "nature",
    noop_max: int | None = None,
    frame_skip: int = 4,
    screen_size: int = 84,
    frame_stack: int = 4,
    terminal_on_life_loss: bool | None = None,
    clip_rewards: bool = True,
    sticky_actions: bool | None = None,
    full_action_space: bool | None = None,
    use_fire_reset: bool | None = None,
    max_episode_steps: int | None = None,
    render_mode: str | None = None,
) -> gym.Env:
    """One Atari env under the rlkit protocol (entry point of ``rlkit/{Game}-v0``).

    ``protocol``: ``"nature"`` (default) or ``"machado"`` (module docstring); keywords left at
    None take the protocol's value (:data:`PROTOCOLS`), explicit ones override it.
    ``max_episode_steps``: through ``gymnasium.make`` this argument is taken by ``make`` itself,
    which adds ``TimeLimit`` from the registered spec (27,000) or from the value given; called
    directly, pass it here to get the same ``TimeLimit`` (None: no limit).
    """
    game = resolve_game(game)
    p = resolve_protocol(protocol, noop_max=noop_max, sticky_actions=sticky_actions,
                         full_action_space=full_action_space, terminal_on_life_loss=terminal_on_life_loss,
                         use_fire_reset=use_fire_reset)
    _check_kwargs(
        noop_max=p["noop_max"],
        frame_skip=frame_skip,
        screen_size=screen_size,
        frame_stack=frame_stack,
        max_episode_steps=max_episode_steps,
    )
    env: gym.Env = AtariEnv(
        game=game,
        obs_type="grayscale",  # AtariPreprocessing reads the screen itself; this is the cheap one
        frameskip=1,
        repeat_action_probability=STICKY_ACTION_PROBABILITY if p["sticky_actions"] else 0.0,
        full_action_space=p["full_action_space"],
        max_num_frames_per_episode=None,
        render_mode=render_mode,
    )
    return preprocess(env, noop_max=p["noop_max"], use_fire_reset=p["use_fire_reset"],
                      terminal_on_life_loss=p["terminal_on_life_loss"], frame_skip=frame_skip,
                      screen_size=screen_size, frame_stack=frame_stack, clip_rewards=clip_rewards,
                      max_episode_steps=max_episode_steps)


def preprocess(
    env: gym.Env,
    *,
    noop_max: int,
    use_fire_reset: bool,
    terminal_on_life_loss: bool,
    frame_skip: int,
    screen_size: int,
    frame_stack: int,
    clip_rewards: bool,
    max_episode_steps: int | None,
) -> gym.Env:
    """The single-env wrapper stack over an ALE env made with ``frameskip=1`` (module docstring):
    FIRE on reset (optional), no-op starts, frame skip with max-pool, grayscale resize, frame
    stack, reward clipping and life-loss info, ``TimeLimit`` (optional).  Shared by
    :func:`make_atari_env` and :func:`rlkit.envs.wrappers.atari_wrappers`."""
    if use_fire_reset:
        env = FireOnReset(env)
    env = NoopStart(env, noop_max)
    env = AtariPreprocessing(
        env,
        noop_max=0,  # NoopStart does them (any game, ALE's NOOP)
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

    No-op starts: ALE's native reset draws ``uniform(0, noop_max - 1)`` no-ops (minus one for
    the FIRE frame of ``use_fire_reset``), not the protocol's 1..noop_max.
    :func:`make_atari_vector_env` asks ALE for one more (two with FIRE) and this wrapper
    resets again, with the same no-op generator, every env whose reset played no no-op
    (``episode_frame_number`` below ``min_reset_frames`` = the game's :func:`start_frames`,
    plus the FIRE frame, plus one), on explicit and automatic resets alike: a uniform draw
    conditioned on "at least one" is uniform on 1..noop_max.  That happens on one reset in
    ``noop_max + 1`` (two in ``noop_max + 2`` with FIRE).  One known gap: with sticky actions
    *and* no-ops (neither protocol), Double Dunk's own start-up length varies, so a reset of
    it with 0 no-ops is only caught when its start-up took the shortest time.
    """

    def __init__(self, env: AtariVectorEnv, *, clip_rewards: bool, terminal_on_life_loss: bool,
                 min_reset_frames: int = 0):
        super().__init__(env)
        self.min_reset_frames = int(min_reset_frames)
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
        self._redraw_noops(obs, info, np.ones(self.num_envs, dtype=bool) if isinstance(mask, slice) else mask)
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
        reset_now = self._reset_next
        if reset_now.any():
            self._redraw_noops(obs, info, reset_now)

        # padding: envs reset in this step hold 1 real frame, the others one more than before
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

    def _redraw_noops(self, obs: np.ndarray, info: dict[str, np.ndarray], reset: np.ndarray) -> None:
        """Reset again, in place, the envs in ``reset`` whose reset played no no-op (class docstring)."""
        if not self.min_reset_frames:
            return
        for _ in range(_MAX_NOOP_REDRAWS):
            redo = reset & (info["episode_frame_number"] < self.min_reset_frames)
            if not redo.any():
                return
            new_obs, new_info = self.env.reset(options={"reset_mask": redo})
            obs[redo] = new_obs[redo]
            for key in ("lives", "frame_number", "episode_frame_number"):
                info[key][redo] = new_info[key][redo]

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
    protocol: str = "nature",
    noop_max: int | None = None,
    frame_skip: int = 4,
    screen_size: int = 84,
    frame_stack: int = 4,
    terminal_on_life_loss: bool | None = None,
    clip_rewards: bool = True,
    sticky_actions: bool | None = None,
    full_action_space: bool | None = None,
    use_fire_reset: bool | None = None,
    max_episode_steps: int | None = MAX_EPISODE_STEPS,
    num_threads: int = 0,
) -> AtariVecEnv:
    """``num_envs`` Atari envs in ALE's threaded C++ vector env (vector entry point of
    ``rlkit/{Game}-v0``).  Same keywords as :func:`make_atari_env` plus ``num_threads``
    (0 = ALE decides); ``max_episode_steps=None`` means no limit."""
    game = resolve_game(game)
    p = resolve_protocol(protocol, noop_max=noop_max, sticky_actions=sticky_actions,
                         full_action_space=full_action_space, terminal_on_life_loss=terminal_on_life_loss,
                         use_fire_reset=use_fire_reset)
    _check_kwargs(
        noop_max=p["noop_max"],
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
    kwargs = dict(
        num_threads=num_threads,
        max_num_frames_per_episode=min(max_frames, _NO_FRAME_LIMIT),
        repeat_action_probability=STICKY_ACTION_PROBABILITY if p["sticky_actions"] else 0.0,
        full_action_space=p["full_action_space"],
        autoreset_mode=AutoresetMode.NEXT_STEP,
        img_height=screen_size,
        img_width=screen_size,
        grayscale=True,
        stack_num=frame_stack,
        frameskip=frame_skip,
        maxpool=True,
        episodic_life=False,
        life_loss_info=False,
        reward_clipping=False,
        use_fire_reset=p["use_fire_reset"],
    )
    noop_max = p["noop_max"]
    if noop_max == 0:
        native = AtariVectorEnv(game, num_envs, noop_max=0, **kwargs)
        return AtariVecEnv(native, clip_rewards=clip_rewards, terminal_on_life_loss=p["terminal_on_life_loss"])
    # Natively uniform(0, n - 1) draws, minus the FIRE frame when one is played (AtariVecEnv): ask
    # for noop_max + 1 (+ 1 with FIRE) and redraw the resets that played no no-op.
    fire = p["use_fire_reset"] and (p["full_action_space"] or Action.FIRE in minimal_action_set(game))
    native = AtariVectorEnv(game, num_envs, noop_max=noop_max + 1 + int(fire), **kwargs)
    return AtariVecEnv(native, clip_rewards=clip_rewards, terminal_on_life_loss=p["terminal_on_life_loss"],
                       min_reset_frames=start_frames(game) + int(fire) + 1)
