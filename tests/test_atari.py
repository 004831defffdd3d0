"""The Atari contract of rlkit.envs.atari, in both the single-env and the native vector path."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

import rlkit.envs  # noqa: F401  (registers rlkit/... ids)
from ale_py import Action
from rlkit.envs.atari import (
    ATARI_GAMES,
    INFO_KEYS,
    PROTOCOLS,
    atari_env_name,
    atari_game_ids,
    make_atari_env,
    make_atari_vector_env,
    minimal_action_set,
    resolve_game,
    resolve_protocol,
    start_frames,
)


def make_vec(game_id: str, num_envs: int, **kwargs):
    return gym.make_vec(game_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)


def expected_stack(history: list[np.ndarray], k: int) -> np.ndarray:
    """Stack of the last k frames of an episode, padded by repeating its first frame."""
    frames = [history[0]] * max(0, k - len(history)) + history[-k:]
    return np.stack(frames)


# ------------------------------------------------------------------- registration, spaces


def test_registration_covers_every_ale_game():
    ids = atari_game_ids()
    assert len(ids) == len(ATARI_GAMES) > 100
    for env_id in ("rlkit/Pong-v0", "rlkit/Breakout-v0", "rlkit/MsPacman-v0", "rlkit/SpaceInvaders-v0"):
        assert env_id in ids
        spec = gym.spec(env_id)
        assert spec.entry_point == "rlkit.envs.atari:make_atari_env"
        assert spec.vector_entry_point == "rlkit.envs.atari:make_atari_vector_env"
        assert spec.max_episode_steps == 27_000
    # every rlkit Atari id has an ALE v5 counterpart (same naming)
    for env_id in ids:
        assert env_id.replace("rlkit/", "ALE/").replace("-v0", "-v5") in gym.registry


def test_single_env_spaces_and_info():
    env = gym.make("rlkit/Pong-v0")
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert env.action_space == gym.spaces.Discrete(6)
    obs, info = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert set(info) == set(INFO_KEYS)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert isinstance(reward, float) and isinstance(terminated, bool) and isinstance(truncated, bool)
    assert set(info) == set(INFO_KEYS)
    assert env.spec.max_episode_steps == 27_000
    env.close()


def test_vector_env_spaces_and_info():
    envs = make_vec("rlkit/Pong-v0", 3)
    assert envs.num_envs == 3
    assert envs.single_observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert envs.single_action_space == gym.spaces.Discrete(6)
    assert envs.observation_space.shape == (3, 4, 84, 84)
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    obs, info = envs.reset(seed=0)
    assert obs.shape == (3, 4, 84, 84) and obs.dtype == np.uint8
    assert set(info) == set(INFO_KEYS)
    obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
    assert obs.shape == (3, 4, 84, 84) and obs.dtype == np.uint8
    assert reward.shape == (3,) and reward.dtype == np.float32
    assert terminated.dtype == bool and truncated.dtype == bool
    assert set(info) == set(INFO_KEYS)
    for key in INFO_KEYS:
        assert info[key].shape == (3,), key
    assert info["life_loss"].dtype == bool and info["raw_reward"].dtype == np.float32
    envs.close()


def test_same_kwargs_build_matching_paths():
    kwargs = dict(frame_stack=2, screen_size=64, noop_max=0, frame_skip=3, full_action_space=True,
                  sticky_actions=True, use_fire_reset=True, terminal_on_life_loss=True, clip_rewards=False)
    env = gym.make("rlkit/Breakout-v0", **kwargs)
    envs = make_vec("rlkit/Breakout-v0", 2, **kwargs)
    assert env.observation_space == envs.single_observation_space == gym.spaces.Box(0, 255, (2, 64, 64), np.uint8)
    assert env.action_space == envs.single_action_space == gym.spaces.Discrete(18)
    obs, _ = env.reset(seed=0)
    vobs, _ = envs.reset(seed=0)
    assert obs.shape == vobs.shape[1:]
    env.close()
    envs.close()


def test_gymnasium_and_sb3_env_checkers():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(gym.make("rlkit/Pong-v0", render_mode="rgb_array").unwrapped)  # the raw ALE env
        check_env(gym.make("rlkit/Pong-v0", render_mode="rgb_array"))  # the whole stack
        sb3_check_env(gym.make("rlkit/Pong-v0"), warn=True)


def test_render_rgb_array_passes_through():
    env = gym.make("rlkit/Pong-v0", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (210, 160, 3) and frame.dtype == np.uint8
    env.close()


# ------------------------------------------------------------------- autoreset and padding


def test_vector_next_step_autoreset_and_repeat_padding():
    """Forced truncations: the step after a done is the reset step, and every stack repeats
    the episode's first frame where it has no earlier frame."""
    n, limit, k = 3, 7, 4
    envs = make_vec("rlkit/Breakout-v0", n, max_episode_steps=limit)
    rng = np.random.default_rng(0)
    obs, info = envs.reset(seed=1)
    histories = [[obs[e, -1]] for e in range(n)]
    for e in range(n):
        np.testing.assert_array_equal(obs[e], expected_stack(histories[e], k))
    steps_in_episode = np.zeros(n, dtype=int)
    done_before = np.zeros(n, dtype=bool)
    resets_seen = 0
    for _ in range(3 * (limit + 1) + 2):
        obs, reward, terminated, truncated, info = envs.step(rng.integers(0, 4, size=n))
        for e in range(n):
            if done_before[e]:  # the autoreset step
                resets_seen += 1
                assert reward[e] == 0 and info["raw_reward"][e] == 0
                assert not terminated[e] and not truncated[e] and not info["life_loss"][e]
                for j in range(k):  # all slots hold the reset frame
                    np.testing.assert_array_equal(obs[e, j], obs[e, -1])
                histories[e] = [obs[e, -1]]
                steps_in_episode[e] = 0
            else:
                histories[e].append(obs[e, -1])
                steps_in_episode[e] += 1
            np.testing.assert_array_equal(obs[e], expected_stack(histories[e], k))
        # time limit in agent steps (Breakout with random play lasts longer than 7 steps)
        np.testing.assert_array_equal(truncated, steps_in_episode == limit)
        done_before = terminated | truncated
    assert resets_seen >= 3 * n
    envs.close()


def test_vector_native_pads_with_zeros_but_we_repeat():
    """Documents why AtariVecEnv patches the stack: ALE's native reset stack is zero-padded."""
    from ale_py.vector_env import AtariVectorEnv

    native = AtariVectorEnv("pong", 1)
    obs, _ = native.reset(seed=0)
    assert obs[0, :3].max() == 0 and obs[0, 3].max() > 0
    native.close()
    envs = make_atari_vector_env("pong", 1)
    obs, _ = envs.reset(seed=0)
    assert all(np.array_equal(obs[0, j], obs[0, 3]) and obs[0, j].max() > 0 for j in range(3))
    envs.close()


def test_vector_partial_reset_pads_only_masked_envs():
    envs = make_atari_vector_env("pong", 2)
    envs.reset(seed=0)
    for _ in range(5):
        obs, *_ = envs.step(np.zeros(2, dtype=np.int64))
    obs, _ = envs.reset(options={"reset_mask": np.array([True, False])})
    assert all(np.array_equal(obs[0, j], obs[0, -1]) for j in range(4))
    obs, *_ = envs.step(np.zeros(2, dtype=np.int64))
    np.testing.assert_array_equal(obs[0, 0], obs[0, 2])
    envs.close()


def test_single_env_repeat_padding_across_episodes():
    k = 4
    env = gym.make("rlkit/Breakout-v0", max_episode_steps=6)
    rng = np.random.default_rng(0)
    for episode in range(3):
        obs, _ = env.reset(seed=episode)
        history = [obs[-1]]
        np.testing.assert_array_equal(obs, expected_stack(history, k))
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
            history.append(obs[-1])
            np.testing.assert_array_equal(obs, expected_stack(history, k))
            done = terminated or truncated
        assert truncated and len(history) == 7
    env.close()


# ------------------------------------------------------------------- rewards and lives


def _collect(step, steps: int, n: int | None, num_actions: int, rng):
    """Run random actions; return stacked (reward, raw_reward, lives, life_loss, terminated)."""
    rewards, raws, lives, life_loss, terminated = [], [], [], [], []
    for _ in range(steps):
        action = rng.integers(0, num_actions, size=n) if n else int(rng.integers(num_actions))
        _, r, term, _, info = step(action)
        rewards.append(r)
        raws.append(info["raw_reward"])
        lives.append(info["lives"])
        life_loss.append(info["life_loss"])
        terminated.append(term)
    return (np.array(rewards), np.array(raws), np.array(lives), np.array(life_loss), np.array(terminated))


@pytest.mark.parametrize("clip", [True, False])
def test_reward_clipping_keeps_raw_reward(clip):
    # Space Invaders pays 5..30 points per alien: raw rewards above 1 within a few hundred steps
    rng = np.random.default_rng(0)
    envs = make_vec("rlkit/SpaceInvaders-v0", 4, clip_rewards=clip)
    envs.reset(seed=0)
    rewards, raws, *_ = _collect(envs.step, 150, 4, 6, rng)
    assert raws.max() > 1
    np.testing.assert_array_equal(rewards, np.sign(raws) if clip else raws)
    envs.close()

    env = gym.make("rlkit/SpaceInvaders-v0", clip_rewards=clip)
    env.reset(seed=0)
    rewards, raws, *_ = _collect(env.step, 300, None, 6, rng)
    assert raws.max() > 1
    np.testing.assert_array_equal(rewards, np.sign(raws) if clip else raws)
    env.close()


@pytest.mark.parametrize("flag", [True, False])
def test_life_loss_info_without_episode_end(flag):
    """Breakout: a lost life sets info["life_loss"] (if asked) but neither ends nor resets."""
    rng = np.random.default_rng(0)
    envs = make_vec("rlkit/Breakout-v0", 2, terminal_on_life_loss=flag)
    _, info = envs.reset(seed=0)
    assert (info["lives"] == 5).all()
    _, _, lives, life_loss, terminated = _collect(envs.step, 120, 2, 4, rng)
    prev = np.vstack([np.full((1, 2), 5), lives[:-1]])
    lost = lives < prev
    assert lost.sum() >= 2 and not terminated.any()  # lives lost, games go on
    np.testing.assert_array_equal(life_loss, lost if flag else np.zeros_like(lost))
    envs.close()

    env = gym.make("rlkit/Breakout-v0", terminal_on_life_loss=flag)
    _, info = env.reset(seed=0)
    lives_before, frame_before, seen = info["lives"], info["episode_frame_number"], 0
    while seen < 2:
        _, _, terminated, truncated, info = env.step(int(rng.integers(4)))
        lost = info["lives"] < lives_before
        assert info["life_loss"] == (flag and lost)
        assert not terminated and not truncated and info["episode_frame_number"] > frame_before
        seen += lost
        lives_before, frame_before = info["lives"], info["episode_frame_number"]
    env.close()


# ------------------------------------------------------------------- no-op starts and protocols


def _vector_reset_frames(game: str, n: int, resets: int, **kwargs) -> np.ndarray:
    """episode_frame_number right after explicit resets, then after automatic ones (a 1-step
    time limit makes every other step an autoreset step)."""
    envs = make_atari_vector_env(game, n, max_episode_steps=1, **kwargs)
    _, info = envs.reset(seed=0)
    frames = [info["episode_frame_number"].copy()]
    for _ in range(resets):
        _, info = envs.reset()
        frames.append(info["episode_frame_number"].copy())
    for _ in range(resets):
        _, _, _, truncated, _ = envs.step(np.zeros(n, dtype=np.int64))
        assert truncated.all()
        _, reward, _, truncated, info = envs.step(np.zeros(n, dtype=np.int64))
        assert not truncated.any() and (reward == 0).all()  # the autoreset step
        frames.append(info["episode_frame_number"].copy())
    envs.close()
    return np.concatenate(frames)


def _single_reset_frames(game: str, resets: int, **kwargs) -> np.ndarray:
    env = make_atari_env(game, **kwargs)
    frames = [env.reset(seed=0)[1]["episode_frame_number"]]
    frames += [env.reset()[1]["episode_frame_number"] for _ in range(resets)]
    env.close()
    return np.array(frames)


@pytest.mark.parametrize("fire", [False, True])
def test_noop_starts_are_1_to_noop_max_in_both_paths(fire):
    """Mnih et al.: 1..noop_max no-ops.  ALE's native reset draws 0..noop_max-1 (measured before the
    fix: frame numbers 0..29 for noop_max=30; 1..29 with the FIRE frame, i.e. 0..28 no-ops)."""
    offset = int(fire)  # Breakout has FIRE: one FIRE frame before the no-ops
    # every value of 1..30 (~250 draws a path), or, with FIRE, the range (~80 draws) and 1..3 exactly
    for noop_max, resets, exact in ((30, 30, True), (3, 6, True)) if not fire else ((30, 10, False), (3, 6, True)):
        vec = _vector_reset_frames("breakout", 4, resets, noop_max=noop_max, use_fire_reset=fire) - offset
        single = _single_reset_frames("breakout", 8 * resets, noop_max=noop_max, use_fire_reset=fire) - offset
        for frames in (vec, single):
            drawn = set(frames.tolist())
            assert drawn == set(range(1, noop_max + 1)) if exact else drawn <= set(range(1, noop_max + 1)), drawn
    # roughly uniform, 0 never drawn (noop_max=3: ALE's raw draw is 0 one time in 4 without FIRE)
    counts = np.bincount(vec, minlength=4)
    assert counts[0] == 0 and counts[1:].min() > 0.5 * counts[1:].mean()


def test_noop_max_zero_plays_no_noops():
    assert set(_vector_reset_frames("pong", 2, 3, noop_max=0).tolist()) == {0}
    assert set(_single_reset_frames("pong", 5, noop_max=0).tolist()) == {0}


def test_noop_redraw_keeps_other_envs_and_autoreset_intact():
    """Envs reset at different steps: a redrawn reset leaves the other envs' frames and pending
    autoresets alone (frame numbers advance by exactly frame_skip; the step after a done resets)."""
    n, frame_skip, noop_max = 3, 4, 2  # redraw on 1 reset in 3
    envs = make_atari_vector_env("breakout", n, noop_max=noop_max, max_episode_steps=3)
    _, info = envs.reset(seed=0)
    envs.step(np.zeros(n, dtype=np.int64))
    obs, info = envs.reset(options={"reset_mask": np.array([True, False, False])})  # desynchronise
    envs.step(np.zeros(n, dtype=np.int64))
    obs, info = envs.reset(options={"reset_mask": np.array([False, True, False])})
    frames, done_before, redraws = info["episode_frame_number"].copy(), np.zeros(n, bool), 0
    for _ in range(40):
        obs, reward, terminated, truncated, info = envs.step(np.ones(n, dtype=np.int64))
        now = info["episode_frame_number"]
        for e in range(n):
            if done_before[e]:
                assert 1 <= now[e] <= noop_max and reward[e] == 0
                redraws += 1
            else:
                assert now[e] == frames[e] + frame_skip
        frames, done_before = now.copy(), terminated | truncated
    assert redraws >= 20
    envs.close()


def test_games_without_noop_in_their_action_set_make_and_play_noop_starts():
    """Backgammon and Video Checkers: minimal action sets without NOOP.  Gymnasium's
    AtariPreprocessing refuses them ('first action meaning must be NOOP'); rlkit presses ALE's NOOP."""
    # the only two of ALE 0.12's 104 games (tests/test_registry.py's slow sweep checks them all)
    without = ["backgammon", "video_checkers"]
    for game in without:
        assert Action.NOOP not in minimal_action_set(game)
        start = start_frames(game)  # Backgammon's own reset plays 2 frames
        env = gym.make(f"rlkit/{atari_env_name(game)}-v0")
        assert env.action_space.n == len(minimal_action_set(game))
        env.reset(seed=0)
        frames = {env.reset()[1]["episode_frame_number"] - start for _ in range(60)}
        assert frames <= set(range(1, 31)) and len(frames) > 15
        env.step(env.action_space.sample())
        env.close()
        frames = _vector_reset_frames(game, 2, 5, noop_max=3) - start
        assert set(frames.tolist()) == {1, 2, 3}


def test_start_frames_are_not_counted_as_noops():
    """Games whose ROM start-up plays frames in ALE's own reset (Name This Game: 134): the vector
    env's redraw must not mistake them for no-ops."""
    assert start_frames("pong") == 0 and start_frames("name_this_game") == 134
    frames = _vector_reset_frames("name_this_game", 4, 3, noop_max=3) - 134
    assert set(frames.tolist()) == {1, 2, 3}
    frames = _single_reset_frames("name_this_game", 15, noop_max=3) - 134
    assert set(frames.tolist()) == {1, 2, 3}


def test_protocol_resolution_and_explicit_overrides():
    assert resolve_protocol("nature") == PROTOCOLS["nature"]
    assert resolve_protocol("machado") == dict(noop_max=0, sticky_actions=True, full_action_space=True,
                                               terminal_on_life_loss=False, use_fire_reset=False)
    assert resolve_protocol("machado", noop_max=7, full_action_space=None)["noop_max"] == 7
    assert resolve_protocol("machado", full_action_space=None)["full_action_space"] is True
    with pytest.raises(ValueError, match="protocol must be one of.*'machado'.*'nature'"):
        make_atari_env("pong", protocol="revisited")
    with pytest.raises(ValueError, match="protocol"):
        make_atari_vector_env("pong", 2, protocol="Nature")


def test_machado_protocol_in_both_paths():
    env = gym.make("rlkit/Pong-v0", protocol="machado")
    envs = make_vec("rlkit/Pong-v0", 2, protocol="machado")
    assert env.action_space == envs.single_action_space == gym.spaces.Discrete(18)
    ale = env.unwrapped.ale
    assert ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    _, info = env.reset(seed=0)
    assert info["episode_frame_number"] == 0  # no no-op starts
    _, info = envs.reset(seed=0)
    assert (info["episode_frame_number"] == 0).all()
    env.close()
    envs.close()
    nature = gym.make("rlkit/Pong-v0")
    assert nature.action_space == gym.spaces.Discrete(6)
    assert nature.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    nature.close()
    # explicit keywords win over the protocol's
    env = gym.make("rlkit/Pong-v0", protocol="machado", noop_max=4, full_action_space=False)
    assert env.action_space == gym.spaces.Discrete(6)
    assert 1 <= env.reset(seed=0)[1]["episode_frame_number"] <= 4
    env.close()


def _frames_after(seed: int, vector: bool, **kwargs) -> np.ndarray:
    actions = np.random.default_rng(0).integers(0, 4, size=60)
    if vector:
        envs = make_atari_vector_env("breakout", 1, **kwargs)
        envs.reset(seed=seed)
        obs = [envs.step(np.array([a]))[0][0].copy() for a in actions]
        envs.close()
    else:
        env = make_atari_env("breakout", **kwargs)
        env.reset(seed=seed)
        obs = [env.step(int(a))[0] for a in actions]
        env.close()
    return np.array(obs)


@pytest.mark.parametrize("vector", [False, True])
def test_machado_stochasticity_comes_from_sticky_actions(vector):
    """Without no-ops or sticky actions Breakout is deterministic whatever the seed; the Machado
    protocol's sticky actions make seeds matter (and the same seed repeats)."""
    deterministic = dict(protocol="machado", sticky_actions=False, full_action_space=False)
    np.testing.assert_array_equal(_frames_after(1, vector, **deterministic), _frames_after(2, vector, **deterministic))
    machado = dict(protocol="machado", full_action_space=False)  # 4 actions, so the same action ids
    np.testing.assert_array_equal(_frames_after(1, vector, **machado), _frames_after(1, vector, **machado))
    assert not np.array_equal(_frames_after(1, vector, **machado), _frames_after(2, vector, **machado))


# ------------------------------------------------------------------- seeding, validation


def _rollout(seed: int, steps: int = 60, **kwargs):
    envs = make_vec("rlkit/Breakout-v0", 3, max_episode_steps=25, sticky_actions=True, **kwargs)
    obs, _ = envs.reset(seed=seed)
    actions = np.random.default_rng(123).integers(0, 4, size=(steps, 3))
    out_obs, out_rew = [obs], []
    for a in actions:
        obs, r, *_ = envs.step(a)
        out_obs.append(obs)
        out_rew.append(r)
    envs.close()
    return np.array(out_obs), np.array(out_rew)


def test_vector_seeding_is_deterministic():
    obs_a, rew_a = _rollout(7)
    obs_b, rew_b = _rollout(7)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    obs_c, _ = _rollout(8)
    assert not np.array_equal(obs_a, obs_c)


def test_single_seeding_is_deterministic():
    def run(seed):
        env = gym.make("rlkit/Breakout-v0", sticky_actions=True)
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for a in np.random.default_rng(0).integers(0, 4, size=40):
            out.append(env.step(int(a))[0])
        env.close()
        return np.array(out)

    np.testing.assert_array_equal(run(3), run(3))


def test_unknown_game_names_closest_match():
    with pytest.raises(ValueError, match=r"'pongg'.*'pong'"):
        make_atari_vector_env("pongg", 2)
    with pytest.raises(ValueError, match=r"'SpaceInvader'.*'SpaceInvaders'"):
        make_atari_env("SpaceInvader")
    assert resolve_game("MsPacman") == resolve_game("rlkit/MsPacman-v0") == "ms_pacman"


def test_bad_vector_action_raises_instead_of_hanging():
    envs = make_atari_vector_env("breakout", 2)  # 4 actions
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="actions"):
        envs.step(np.array([0, 4]))
    envs.step([1, 3])  # lists are fine
    envs.close()


def test_bad_kwargs_are_named():
    with pytest.raises(ValueError, match="frame_stack"):
        make_atari_env("pong", frame_stack=0)
    with pytest.raises(ValueError, match="noop_max"):
        make_atari_vector_env("pong", 2, noop_max=-1)
    with pytest.raises(ValueError, match="num_envs"):
        make_atari_vector_env("pong", 0)


# ---- integration with the replay buffer and the training loop ----------------------------------


def test_replay_rebuilds_exactly_the_stacks_the_native_env_produced():
    """Real ALE frames through the loop's add protocol: every sampled obs / next_obs equals the stack
    the env returned, across resets (short episodes force many)."""
    import torch

    from rlkit.experience.replay import ReplayBuffer

    n, steps = 4, 260
    envs = gym.make_vec("rlkit/Breakout-v0", num_envs=n, vectorization_mode="vector_entry_point",
                              max_episode_steps=37)
    buffer = ReplayBuffer.from_spaces(envs.single_observation_space, envs.single_action_space,
                                      capacity=n * 400, num_envs=n, frame_stack=4, n_step=1, gamma=0.99)
    obs, _ = envs.reset(seed=5)
    autoreset = np.zeros(n, dtype=bool)
    history = []  # history[row][env] = the obs stack the env gave at that row
    rng = np.random.default_rng(0)
    for _ in range(steps):
        actions = rng.integers(envs.single_action_space.n, size=n)
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        buffer.add(obs, actions, rewards, terminated | infos["life_loss"], truncated, autoreset)
        history.append(obs.copy())
        autoreset = terminated | truncated
        obs = next_obs
    envs.close()
    batch = buffer.sample(512)
    rows = (batch.indices // n).numpy()
    env_ids = (batch.indices % n).numpy()
    for i in range(len(rows)):
        np.testing.assert_array_equal(batch.obs[i].numpy(), history[rows[i]][env_ids[i]])
        np.testing.assert_array_equal(batch.next_obs[i].numpy(), history[rows[i] + 1][env_ids[i]])
    assert torch.all((batch.discounts == 0.99) | (batch.discounts == 0.0))


def test_dqn_trains_on_pong_smoke(tmp_path):
    """The Pong config end to end on a tiny budget: native vector env, Nature CNN, frame-stack replay,
    evaluation and checkpoint."""
    from rlkit.config import configs_dir, load_config
    from rlkit.runfiles.logger import read_metrics
    from rlkit.training.loops import train_online

    cfg = load_config(configs_dir() / "dqn_pong.yaml", [
        "env.num_envs=4", "train.total_steps=600", "train.learning_starts=200", "train.replay.capacity=4000",
        "train.eval_every=0", "train.eval_episodes=1", "train.checkpoint_every=0", "log.progress=false",
        "log.tensorboard=false", "log.log_every=200", "env.kwargs.max_episode_steps=150", "torch_threads=1",
    ])
    summary = train_online(cfg, tmp_path)
    assert summary["steps"] == 600
    records = read_metrics(tmp_path)
    train = [r for r in records if r["kind"] == "train" and r["updates"] > 0]
    assert train and all(np.isfinite(r["loss"]) for r in train)
    assert [r for r in records if r["kind"] == "eval"]
    assert (tmp_path / "checkpoints" / "latest.pt").exists()
