"""Tests for rlkit.experience.replay: n-step targets, frame stacks, prioritized sampling, wrap-around, resume."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.experience.replay import ReplayBuffer, SumTree, Transitions


# --------------------------------------------------------------------------- helpers
def vector_buffer(capacity: int, num_envs: int, **kw) -> ReplayBuffer:
    return ReplayBuffer(capacity=capacity, num_envs=num_envs, obs_shape=(1,), obs_dtype=torch.float32,
                        action_shape=(), action_dtype=torch.int64, **kw)


def add_rows(buffer: ReplayBuffer, rows: list[tuple]) -> None:
    """rows: (obs_value, reward, terminated, truncated, autoreset) for a single env."""
    for obs, reward, term, trunc, autoreset in rows:
        buffer.add(np.array([[obs]], np.float32), np.array([int(obs)]), np.array([reward]),
                   np.array([term]), np.array([trunc]), np.array([autoreset]))


def transitions_by_key(batch: Transitions, key) -> dict:
    """Map key(obs_i) -> (reward, discount, next_obs, action) for every sampled transition."""
    out = {}
    for i in range(len(batch.rewards)):
        k = key(batch.obs[i])
        value = (float(batch.rewards[i]), float(batch.discounts[i]), batch.next_obs[i].clone(),
                 int(batch.actions[i]))
        if k in out:  # the same start row always yields the same transition
            assert out[k][:2] == pytest.approx(value[:2])
        out[k] = value
    return out


class FakeVectorEnv:
    """N envs with gymnasium NEXT_STEP autoreset producing frame stacks of unique frame ids.

    Every new frame (reset or step) is an HxW image filled with a fresh id, so each stored row can be
    identified by the newest frame of its observation. A reset stack is ``S`` copies of the reset frame
    (``padding="repeat"``) or zeros followed by it (``"zero"``).
    """

    def __init__(self, num_envs: int, stack: int, seed: int = 0, padding: str = "repeat",
                 p_term: float = 0.12, p_trunc: float = 0.08, hw: tuple[int, int] = (2, 3)) -> None:
        self.num_envs, self.stack, self.padding, self.hw = num_envs, stack, padding, hw
        self.p_term, self.p_trunc = p_term, p_trunc
        self.rng = np.random.default_rng(seed)
        self.next_id = 1
        self.stacks = np.zeros((num_envs, stack, *hw), np.uint8)
        self.need_reset = np.zeros(num_envs, bool)

    def _new_frame(self) -> np.ndarray:
        assert self.next_id < 256, "ran out of unique uint8 frame ids"
        frame = np.full(self.hw, self.next_id, np.uint8)
        self.next_id += 1
        return frame

    def _reset_env(self, e: int) -> None:
        frame = self._new_frame()
        self.stacks[e] = frame if self.padding == "repeat" else 0
        self.stacks[e, -1] = frame

    def reset(self) -> np.ndarray:
        for e in range(self.num_envs):
            self._reset_env(e)
        return self.stacks.copy()

    def step(self, actions):
        n = self.num_envs
        rewards, term, trunc = np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool)
        for e in range(n):
            if self.need_reset[e]:
                self._reset_env(e)
                self.need_reset[e] = False
                continue
            self.stacks[e, :-1] = self.stacks[e, 1:].copy()
            self.stacks[e, -1] = self._new_frame()
            rewards[e] = float(self.rng.integers(-3, 4))
            u = self.rng.random()
            term[e], trunc[e] = u < self.p_term, self.p_term <= u < self.p_term + self.p_trunc
            self.need_reset[e] = term[e] or trunc[e]
        return self.stacks.copy(), rewards, term, trunc, {}


def run_protocol(buffer: ReplayBuffer, env: FakeVectorEnv, steps: int, after_add=None) -> dict:
    """Run the training-loop protocol; return per-env records indexed by step."""
    n = env.num_envs
    records = {e: [] for e in range(n)}
    obs = env.reset()
    autoreset = np.zeros(n, bool)
    for step in range(steps):
        actions = np.arange(n) + 1000 * step
        next_obs, rewards, term, trunc, _ = env.step(actions)
        buffer.add(obs, actions, rewards, term, trunc, autoreset)
        for e in range(n):
            records[e].append(dict(obs=obs[e].copy(), action=int(actions[e]), reward=float(rewards[e]),
                                   term=bool(term[e]), trunc=bool(trunc[e]), autoreset=bool(autoreset[e]),
                                   next_obs=next_obs[e].copy()))
        autoreset = term | trunc
        obs = next_obs
        if after_add is not None:
            after_add(step, records)
    return records


def reference_n_step(record: list[dict], t: int, n: int, gamma: float):
    """Return (reward_sum, discount, next_obs) from env outputs, independently of buffer rows."""
    total = 0.0
    for i in range(n):
        step = record[t + i]
        total += gamma ** i * step["reward"]
        if step["term"]:
            return total, 0.0, step["next_obs"]
        if step["trunc"] or i == n - 1:
            return total, gamma ** (i + 1), step["next_obs"]
    raise AssertionError("unreachable")


def step_id_of(frame_stack: torch.Tensor) -> int:
    return int(frame_stack[-1].flatten()[0])


def check_batch_against_records(batch: Transitions, records: dict, frame_to_step: dict,
                                n: int, gamma: float) -> list[tuple[int, int]]:
    """Assert every sampled transition equals the env's own data; return sampled (step, env)."""
    drawn = []
    for i in range(len(batch.rewards)):
        step, e = frame_to_step[step_id_of(batch.obs[i])]
        rec = records[e][step]
        assert not rec["autoreset"], "an autoreset row was sampled"
        np.testing.assert_array_equal(batch.obs[i].numpy(), rec["obs"])
        assert int(batch.actions[i]) == rec["action"]
        reward, discount, next_obs = reference_n_step(records[e], step, n, gamma)
        assert float(batch.rewards[i]) == pytest.approx(reward, abs=1e-5)
        assert float(batch.discounts[i]) == pytest.approx(discount, abs=1e-6)
        if discount > 0:
            np.testing.assert_array_equal(batch.next_obs[i].numpy(), next_obs)
        drawn.append((step, e))
    return drawn


def frame_index(records: dict) -> dict:
    """newest frame id of a row's obs -> (step, env)."""
    return {int(r["obs"][-1].flat[0]): (step, e) for e, rec in records.items() for step, r in enumerate(rec)}


# --------------------------------------------------------------------------- n-step targets
# One env, gamma = 0.5, n = 3. Rows: (obs, reward, terminated, truncated, autoreset)
HAND_STREAM = [
    (0, 1.0, False, False, False),
    (1, 2.0, False, False, False),
    (2, 3.0, False, False, False),
    (3, 4.0, True, False, False),     # terminates
    (4, 0.0, False, False, True),     # autoreset row: final obs of episode A
    (5, 10.0, False, False, False),
    (6, 20.0, False, False, False),
    (7, 30.0, False, True, False),    # truncated (time limit)
    (8, 0.0, False, False, True),     # autoreset row: true final obs of episode B
    (9, 1.0, False, False, False),
    (10, 1.0, False, False, False),
    (11, 1.0, False, False, False),
    (12, 1.0, False, False, False),
    (13, 1.0, False, False, False),
    (14, 1.0, False, False, False),
]
# start obs -> (reward sum, discount, next obs), computed by hand
HAND_EXPECTED = {
    0: (1 + 0.5 * 2 + 0.25 * 3, 0.125, 3),   # mid-episode
    1: (2 + 0.5 * 3 + 0.25 * 4, 0.0, 4),     # crosses the termination
    2: (3 + 0.5 * 4, 0.0, 4),
    3: (4.0, 0.0, 4),
    5: (10 + 0.5 * 20 + 0.25 * 30, 0.125, 8),  # truncation at the window's last step
    6: (20 + 0.5 * 30, 0.25, 8),             # truncation inside the window: gamma^2 from final obs
    7: (30.0, 0.5, 8),
    9: (1.75, 0.125, 12),
    10: (1.75, 0.125, 13),
    11: (1.75, 0.125, 14),                   # 12..14 are the newest n rows: window still open
}


def test_n_step_targets_by_hand():
    buffer = vector_buffer(32, 1, gamma=0.5, n_step=3)
    add_rows(buffer, HAND_STREAM)
    assert len(buffer) == 15
    assert buffer.num_sampleable() == len(HAND_EXPECTED)
    seen = transitions_by_key(buffer.sample(2000), key=lambda o: int(o[0]))
    assert set(seen) == set(HAND_EXPECTED), "sampled exactly the valid rows with closed windows"
    for start, (reward, discount, next_obs) in HAND_EXPECTED.items():
        got_reward, got_discount, got_next, action = seen[start]
        assert got_reward == pytest.approx(reward)
        assert got_discount == pytest.approx(discount)
        assert action == start
        if discount > 0:
            assert int(got_next[0]) == next_obs


def test_reference_agrees_with_hand_values():
    record = [dict(reward=r, term=te, trunc=tr, next_obs=HAND_STREAM[i + 1][0] if i + 1 < 15 else None)
              for i, (_, r, te, tr, _) in enumerate(HAND_STREAM)]
    for start, (reward, discount, next_obs) in HAND_EXPECTED.items():
        got = reference_n_step(record, start, 3, 0.5)
        assert got[:2] == pytest.approx((reward, discount))
        if discount > 0:
            assert got[2] == next_obs


def test_n_step_two_envs_with_different_boundaries():
    # env 0 uses the hand stream; env 1 ends its episodes elsewhere
    env1 = [(0, 5.0, True, False, False), (1, 0.0, False, False, True), (2, 1.0, False, False, False),
            (3, 2.0, False, True, False), (4, 0.0, False, False, True), (5, 3.0, False, False, False),
            (6, 4.0, False, False, False), (7, 5.0, False, False, False), (8, 6.0, True, False, False),
            (9, 0.0, False, False, True), (10, 7.0, False, False, False), (11, 8.0, False, False, False),
            (12, 9.0, False, False, False), (13, 1.0, False, False, False), (14, 1.0, False, False, False)]
    buffer = vector_buffer(64, 2, gamma=0.9, n_step=2)
    for r0, r1 in zip(HAND_STREAM, env1):
        rows = list(zip(r0, r1))
        buffer.add(np.array([[r0[0]], [100 + r1[0]]], np.float32), np.array([r0[0], 100 + r1[0]]),
                   *(np.array(col) for col in rows[1:]))
    seen = transitions_by_key(buffer.sample(4000), key=lambda o: int(o[0]))
    for base, stream in ((0, HAND_STREAM), (100, env1)):
        record = [dict(reward=r, term=te, trunc=tr, next_obs=stream[i + 1][0] if i + 1 < 15 else None)
                  for i, (_, r, te, tr, _) in enumerate(stream)]
        valid_starts = {t for t, row in enumerate(stream) if not row[4] and t <= 14 - 2}
        assert {k - base for k in seen if base <= k < base + 100} == valid_starts
        for t in valid_starts:
            reward, discount, next_obs = reference_n_step(record, t, 2, 0.9)
            got_reward, got_discount, got_next, _ = seen[base + t]
            assert got_reward == pytest.approx(reward, abs=1e-5)
            assert got_discount == pytest.approx(discount, abs=1e-6)
            if discount > 0:
                assert int(got_next[0]) == base + next_obs
    # spot-check env 1 by hand: start 2 -> 1 + 0.9 * 2, truncated at t=3 -> bootstrap row 4, 0.81
    assert seen[102][:2] == pytest.approx((1 + 0.9 * 2, 0.81))
    assert seen[100][:2] == pytest.approx((5.0, 0.0))


# --------------------------------------------------------------------------- frame stacks
@pytest.mark.parametrize("padding", ["repeat", "zero"])
@pytest.mark.parametrize("n_step", [1, 3])
def test_frame_stack_reconstruction(padding, n_step):
    env = FakeVectorEnv(num_envs=2, stack=4, seed=1, padding=padding)
    buffer = ReplayBuffer(capacity=400, num_envs=2, obs_shape=(4, 2, 3), obs_dtype=torch.uint8,
                          action_shape=(), action_dtype=torch.int64, gamma=0.9, n_step=n_step,
                          frame_stack=4, stack_padding=padding)
    records = run_protocol(buffer, env, steps=60)
    assert buffer._obs[""].shape == (200, 2, 2, 3), "only the newest frame is stored"
    batch = buffer.sample(3000)
    assert batch.obs.shape == (3000, 4, 2, 3) and batch.obs.dtype == torch.uint8
    drawn = check_batch_against_records(batch, records, frame_index(records), n_step, 0.9)
    expected = {(t, e) for e in range(2) for t in range(60 - n_step) if not records[e][t]["autoreset"]}
    assert set(drawn) == expected
    episode_starts = [(t, e) for (t, e) in expected if t > 0 and records[e][t - 1]["autoreset"]]
    assert episode_starts, "the stream should contain resets"


# --------------------------------------------------------------------------- wrap-around
@pytest.mark.parametrize("prioritized", [False, True])
def test_wraparound_never_samples_overwritten_history(prioritized):
    N, R, S, n, gamma = 2, 10, 3, 2, 0.8
    env = FakeVectorEnv(num_envs=N, stack=S, seed=3)
    buffer = ReplayBuffer(capacity=N * R, num_envs=N, obs_shape=(S, 2, 3), obs_dtype=torch.uint8,
                          action_shape=(), action_dtype=torch.int64, gamma=gamma, n_step=n,
                          frame_stack=S, prioritized=prioritized, seed=5)
    drawn_ever = set()

    def after_add(step, records):
        written = step + 1
        if buffer.num_sampleable() == 0:
            return
        batch = buffer.sample(64)
        drawn = check_batch_against_records(batch, records, frame_index(records), n, gamma)
        oldest_allowed = written - R + (S - 1) if written >= R else 0
        for t, e in drawn:
            assert oldest_allowed <= t <= written - 1 - n, (t, written)
        drawn_ever.update(drawn)
        if prioritized:  # sum-tree leaves are non-zero exactly on the sampleable rows
            leaves = buffer._tree.get(torch.arange(buffer.capacity)).view(R, N)
            mask = buffer._sampleable(torch.arange(R))
            assert torch.equal(leaves > 0, mask)
            assert int(mask.sum()) == buffer.num_sampleable()
            buffer.update_priorities(batch.indices, torch.rand(64) * 3)

    run_protocol(buffer, env, steps=55, after_add=after_add)
    assert len(buffer) == N * R
    assert max(t for t, _ in drawn_ever) > 3 * R, "kept sampling after several wraps"


# --------------------------------------------------------------------------- prioritized
def test_prioritized_proportions_and_weights():
    alpha, beta, eps = 0.6, 0.4, 1e-6
    buffer = vector_buffer(16, 1, n_step=1, prioritized=True, alpha=alpha, eps=eps, seed=7)
    stream = [(t, 1.0, False, False, False) for t in range(12)]
    stream[5] = (5, 0.0, False, False, True)  # autoreset row: never sampleable
    add_rows(buffer, stream)                   # rows 0..10 closed, 11 open
    sampleable = [t for t in range(11) if t != 5]
    assert buffer.num_sampleable() == len(sampleable)
    td = torch.tensor([0.5 * (t + 1) for t in sampleable])
    buffer.update_priorities(torch.tensor(sampleable), td)
    buffer.update_priorities(torch.tensor([5, 11]), torch.tensor([100.0, 100.0]))  # ignored: unsampleable

    stored = (td + eps) ** alpha
    expected = (stored / stored.sum()).double()
    counts = torch.zeros(16, dtype=torch.float64)
    draws = 0
    for _ in range(100):
        batch = buffer.sample(256, beta=beta)
        counts += torch.bincount(batch.indices, minlength=16).double()
        draws += 256
        probs = expected[torch.searchsorted(torch.tensor(sampleable), batch.indices)]
        w = probs ** -beta
        torch.testing.assert_close(batch.weights.double(), w / w.max(), rtol=1e-5, atol=1e-6)
    freq = counts / draws
    assert counts[5] == 0 and counts[11:].sum() == 0, "zero-priority rows were drawn"
    sigma = torch.sqrt(expected * (1 - expected) / draws)
    assert torch.all((freq[sampleable] - expected).abs() < 4 * sigma + 1e-3), (freq, expected)

    # a row that becomes sampleable enters with the max priority seen so far
    add_rows(buffer, [(12, 1.0, False, False, False)])
    assert float(buffer._tree.get(torch.tensor([11]))) == pytest.approx(float(stored.max()))


def test_uniform_weights_are_ones_and_frequencies_uniform():
    buffer = vector_buffer(16, 1, n_step=1, seed=2)
    stream = [(t, 1.0, False, False, t == 4) for t in range(10)]
    add_rows(buffer, stream)
    counts = torch.zeros(16)
    for _ in range(50):
        batch = buffer.sample(200)
        assert torch.all(batch.weights == 1)
        counts += torch.bincount(batch.indices, minlength=16).float()
    sampleable = [t for t in range(9) if t != 4]
    assert counts[4] == 0 and counts[9:].sum() == 0
    freq = counts[sampleable] / counts.sum()
    assert torch.all((freq - 1 / 8).abs() < 0.02)


def test_sample_batches_are_views_of_one_uniform_draw():
    """train.gather_batches: ``sample_batches(B, k)`` is one draw of k * B transitions cut into k batches (views,
    nothing copied), each a correct n-step transition set, uniform over the sampleable rows; PER refuses."""
    buffer = vector_buffer(16, 1, n_step=2, gamma=0.5, seed=2)
    add_rows(buffer, [(t, 1.0, t == 6, False, t == 7) for t in range(12)])
    one_draw = vector_buffer(16, 1, n_step=2, gamma=0.5, seed=2)
    add_rows(one_draw, [(t, 1.0, t == 6, False, t == 7) for t in range(12)])
    batches = buffer.sample_batches(5, 4)
    whole = one_draw.sample(20)  # the same generator state: the same 20 transitions, in order
    assert len(batches) == 4 and all(len(b.rewards) == 5 for b in batches)
    for i, batch in enumerate(batches):
        for name in ("obs", "actions", "rewards", "next_obs", "discounts", "weights", "indices"):
            torch.testing.assert_close(getattr(batch, name), getattr(whole, name)[5 * i:5 * (i + 1)], rtol=0, atol=0)
    assert batches[1].obs.data_ptr() == batches[0].obs.data_ptr() + 5 * batches[0].obs.stride(0) * 4  # views
    counts = torch.zeros(16)
    for _ in range(40):
        for batch in buffer.sample_batches(50, 4):
            counts += torch.bincount(batch.indices, minlength=16).float()
    sampleable = [t for t in range(10) if t != 7]  # row 7 is an autoreset row; rows 10, 11 wait for their n steps
    assert counts[7] == 0 and counts[10:].sum() == 0
    assert torch.all((counts[sampleable] / counts.sum() - 1 / len(sampleable)).abs() < 0.02)
    with pytest.raises(ValueError, match="prioritized buffer samples one batch per update"):
        vector_buffer(16, 1, prioritized=True).sample_batches(4, 2)


def test_sum_tree_find_and_duplicates():
    tree = SumTree(5)
    assert tree.num_leaves == 8
    tree.set(torch.tensor([0, 2, 2, 4]), torch.tensor([1.0, 3.0, 2.0, 4.0]))  # duplicate: max wins
    assert tree.total == pytest.approx(8.0)
    found = tree.find(torch.tensor([0.0, 0.99, 1.0, 3.99, 4.0, 7.99, 8.0]))
    assert found.tolist() == [0, 0, 2, 2, 4, 4, 4]


# --------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("steps", [12, 40])  # partly filled and wrapped
def test_state_dict_round_trip_gives_identical_samples(tmp_path, steps):
    def make(seed):
        return ReplayBuffer(capacity=30, num_envs=2, obs_shape=(3, 2, 3), obs_dtype=torch.uint8,
                            action_shape=(), action_dtype=torch.int64, gamma=0.9, n_step=2,
                            frame_stack=3, prioritized=True, seed=seed)

    original = make(seed=0)
    env = FakeVectorEnv(num_envs=2, stack=3, seed=11)
    run_protocol(original, env, steps=steps)
    batch = original.sample(16)
    original.update_priorities(batch.indices, 1 + 5 * torch.rand(16))  # max priority above 1

    path = tmp_path / "replay.pt"
    torch.save(original.state_dict(), path)
    restored = make(seed=123)
    restored.load_state_dict(torch.load(path, weights_only=True))
    assert len(restored) == len(original)

    extra = [(np.full((2, 3, 2, 3), 200 + i, np.uint8), np.array([i, i]), np.ones(2), np.zeros(2, bool),
              np.array([False, i == 1]), np.array([False, i == 2])) for i in range(4)]
    for row in extra:  # new rows close their windows and enter with the restored max priority
        original.add(*row)
        restored.add(*row)
        a, b = original.sample(32, beta=0.5), restored.sample(32, beta=0.5)
        for field in ("obs", "actions", "rewards", "next_obs", "discounts", "weights", "indices"):
            assert torch.equal(getattr(a, field), getattr(b, field)), field
        original.update_priorities(a.indices, a.rewards.abs())
        restored.update_priorities(b.indices, b.rewards.abs())


def test_load_rejects_other_layout():
    a = vector_buffer(32, 2, n_step=1)
    b = vector_buffer(32, 2, n_step=3)
    with pytest.raises(ValueError, match="n_step"):
        b.load_state_dict(a.state_dict())


# --------------------------------------------------------------------------- memory, construction
def test_atari_sized_buffer_stores_one_frame_per_row():
    buffer = ReplayBuffer(capacity=1_000_000, num_envs=8, obs_shape=(4, 84, 84), obs_dtype=torch.uint8,
                          action_shape=(), action_dtype=torch.int64, frame_stack=4, device="meta")
    assert math.isclose(buffer.nbytes(), 7.06e9, rel_tol=0.01), buffer.nbytes()


def test_from_spaces():
    obs_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    buffer = ReplayBuffer.from_spaces(obs_space, gym.spaces.Discrete(6), capacity=1000, num_envs=4,
                                      frame_stack=4)
    assert buffer._obs[""].shape == (250, 4, 84, 84) and buffer._obs[""].dtype == torch.uint8
    assert buffer._actions.shape == (250, 4) and buffer._actions.dtype == torch.int64
    box = ReplayBuffer.from_spaces(gym.spaces.Box(-1, 1, (3,), np.float32),
                                   gym.spaces.Box(-1, 1, (2,), np.float32), capacity=100, num_envs=2)
    assert box._obs[""].dtype == torch.float32 and box._actions.shape == (50, 2, 2)
    with pytest.raises(ValueError, match="action space"):
        ReplayBuffer.from_spaces(obs_space, gym.spaces.MultiBinary(3), capacity=100, num_envs=2)


def test_public_surface_for_sample_hooks():
    """What HER reads: stored rows, episode bounds, one key's rows, the stacked keys, gamma powers."""
    buffer = vector_buffer(8, 1, gamma=0.5, n_step=2)
    assert (buffer.rows_stored, buffer.oldest_row, buffer.stacked_keys) == (0, 0, frozenset())
    add_rows(buffer, [(t, 0.0, t == 3, False, t == 4) for t in range(6)])
    assert (buffer.rows_stored, buffer.oldest_row) == (6, 0)
    add_rows(buffer, [(t, 0.0, False, False, False) for t in range(6, 11)])  # 11 writes in 8 rows: wrapped
    assert (buffer.rows_stored, buffer.oldest_row) == (8, 3)
    rows, envs = torch.tensor([3, 0, 2]), torch.zeros(3, dtype=torch.int64)
    assert buffer.stored("", rows, envs).flatten().tolist() == [3.0, 8.0, 10.0]  # write t sits in row t % 8
    assert torch.equal(buffer.stored("", rows, envs), buffer.obs_at(rows, envs))
    # write 3 ends the first episode (its start overwritten: the oldest row), writes 5.. are the second's
    assert buffer.episode_start_rows(rows, envs).tolist() == [3, 5, 5]
    assert buffer.episode_end_rows(rows, envs).tolist() == [4, 2, 2]  # its final-obs row; the newest row
    assert buffer.gamma_powers.tolist() == [1.0, 0.5, 0.25]
    with pytest.raises(KeyError, match="no stored observation key 'goal'"):
        buffer.stored("goal", rows, envs)
    stacked = ReplayBuffer.from_spaces(gym.spaces.Box(0, 255, (4, 8, 8), np.uint8), gym.spaces.Discrete(2),
                                       capacity=40, num_envs=2, frame_stack=4)
    assert stacked.stacked_keys == frozenset({""})
    with pytest.raises(ValueError, match="frame-stacked"):
        stacked.stored("", rows, envs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(capacity=3, num_envs=4), "capacity"),
    (dict(n_step=0), "n_step"),
    (dict(frame_stack=4, obs_shape=(3, 84, 84)), "frame_stack"),
    (dict(stack_padding="edge"), "stack_padding"),
    (dict(capacity=8, num_envs=2, n_step=3, frame_stack=2, obs_shape=(2, 4, 4)), "too small"),
    (dict(gamma=1.5), "gamma"),
])
def test_invalid_arguments(kwargs, message):
    args = dict(capacity=100, num_envs=2, obs_shape=(4,), obs_dtype=torch.float32, action_shape=(),
                action_dtype=torch.int64)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ReplayBuffer(**args)


def test_sample_before_any_window_closes_raises():
    buffer = vector_buffer(16, 1, n_step=3)
    add_rows(buffer, [(0, 1.0, False, False, False)] * 3)
    assert buffer.num_sampleable() == 0
    with pytest.raises(RuntimeError, match="nothing to sample"):
        buffer.sample(4)
