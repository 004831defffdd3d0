"""Pseudo-labelling action-free data (rlkit.training.pseudo_label, `rlkit dataset pseudo-label`): confidence
filtering on hand-built logits, the seeded labelled split, episode cutting, CLI round trips and bad input."""

import gymnasium as gym
import numpy as np
import pytest

from rlkit.cli import main
from rlkit.errors import ConfigError
from rlkit.experience.datasets import Episode, dataset_path, load_dataset, write_dataset
from rlkit.training.pseudo_label import (action_free_episode, action_free_mask, box_labels, confident, cut_episode,
                                         discrete_labels, kept_runs, labelled_count, labelled_split, labelled_subset,
                                         pseudo_label)


@pytest.fixture(autouse=True)
def datasets_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _play(env_id: str, steps: int, seed: int = 0, max_len: int = 60) -> tuple[list[Episode], gym.Space, gym.Space]:
    """Random-action episodes of ``env_id``, each at most ``max_len`` steps (cut: truncated), ``steps`` in all."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    episodes, done_steps, reset_seed = [], 0, seed
    while done_steps < steps:
        obs, _ = env.reset(seed=reset_seed)
        reset_seed += 1
        observations, actions, rewards, terms, truncs = [obs], [], [], [], []
        for t in range(min(max_len, steps - done_steps)):
            action = env.action_space.sample()
            obs, reward, term, trunc, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            terms.append(term)
            truncs.append(trunc or (not term and t == min(max_len, steps - done_steps) - 1))
            if term or trunc:
                break
        done_steps += len(actions)
        episodes.append(Episode(np.array(observations), np.array(actions), np.array(rewards, np.float32),
                                np.array(terms), np.array(truncs)))
    spaces = env.observation_space, env.action_space
    env.close()
    return episodes, *spaces


@pytest.fixture
def cartpole():
    episodes, obs_space, act_space = _play("CartPole-v1", 400)
    write_dataset("test/cartpole-v0", episodes, obs_space, act_space, env_id="CartPole-v1", ref_scores=(20.0, 500.0))
    return episodes


@pytest.fixture
def pendulum():
    episodes, obs_space, act_space = _play("Pendulum-v1", 300, max_len=50)
    write_dataset("test/pendulum-v0", episodes, obs_space, act_space, env_id="Pendulum-v1")
    return episodes


# ------------------------------------------------------------------ confidence filtering (pure)


def test_discrete_confidence_filtering_on_hand_built_logits():
    logits = np.array([[10.0, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, 3.0]])
    labels, confidence = discrete_labels(logits)
    np.testing.assert_array_equal(labels, [0, 1, 2])
    expected = np.exp(logits).max(axis=1) / np.exp(logits).sum(axis=1)  # max softmax
    np.testing.assert_allclose(confidence, expected)
    np.testing.assert_array_equal(confident(confidence, 0.95), [True, False, False])
    np.testing.assert_array_equal(confident(confidence, 0.8), [True, False, True])
    np.testing.assert_array_equal(confident(confidence, None), [True, True, True])
    # the threshold is inclusive: FixMatch's 1[max q >= tau]
    assert confident(np.array([0.95]), 0.95)[0]
    # an ensemble averages the members' probabilities: two sure members that disagree make an unsure label
    members = np.array([[[5.0, -5.0]], [[-5.0, 5.0]]])
    _, both = discrete_labels(members)
    assert both[0] == pytest.approx(0.5) and not confident(both, 0.6)[0]
    agree, sure = discrete_labels(np.array([[[5.0, -5.0]], [[4.0, -4.0]]]))
    assert agree[0] == 0 and confident(sure, 0.95)[0]


def test_box_labels_clip_to_bounds_and_disagreement():
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 1.0])  # c = (0, 0.5), h = (2, 0.5)
    predictions = np.array([[[0.5, 3.0]], [[0.5, 1.0]]])   # members agree on dim 0, not on dim 1
    actions, disagreement = box_labels(predictions, low, high)
    np.testing.assert_allclose(actions, [[1.0, 1.0]])          # dim 1: 0.5 + 0.5 * 2 = 1.5, clipped to 1
    assert disagreement[0] == pytest.approx((0.0 + 1.0) / 2)   # std over members per dim, mean over dims
    _, single = box_labels(np.array([[0.1, -0.2]]), low, high)
    assert single[0] == 0.0
    np.testing.assert_array_equal(confident(np.array([0.1, 0.5, 0.9]), 0.5, higher_is_better=False),
                                  [True, True, False])


def test_kept_runs_and_cut_episode():
    assert kept_runs(np.array([1, 1, 0, 1, 0, 0, 1, 1], bool)) == [(0, 2), (3, 4), (6, 8)]
    assert kept_runs(np.zeros(3, bool)) == [] and kept_runs(np.ones(3, bool)) == [(0, 3)]
    T = 6
    term = np.zeros(T, bool)
    term[-1] = True
    ep = Episode(np.arange(T + 1, dtype=np.float32)[:, None], np.zeros(T, np.int64), np.arange(T, dtype=np.float32),
                 term, np.zeros(T, bool))
    pieces = cut_episode(ep, np.arange(T), np.array([1, 1, 0, 1, 1, 1], bool))
    assert [(a, b) for a, b, _ in pieces] == [(0, 2), (3, 6)]
    first, last = pieces[0][2], pieces[1][2]
    np.testing.assert_array_equal(first.observations[:, 0], [0, 1, 2])     # T + 1 observations, s_2 the last
    np.testing.assert_array_equal(first.actions, [0, 1])
    assert first.truncations.tolist() == [False, True] and not first.terminations.any()  # cut: truncated
    np.testing.assert_array_equal(last.observations[:, 0], [3, 4, 5, 6])
    assert last.terminations.tolist() == [False, False, True] and not last.truncations.any()  # the real end
    np.testing.assert_array_equal(last.rewards, [3, 4, 5])


# ------------------------------------------------------------------ the labelled split


def test_labelled_split_is_seeded_and_exact():
    for n, fraction, count in ((100, 0.1, 10), (572, 0.1, 57), (7, 0.5, 4), (3, 0.01, 1), (9, 1.0, 9)):
        assert labelled_count(n, fraction) == count
        mask = labelled_split(n, fraction, seed=3)
        assert mask.dtype == bool and mask.shape == (n,) and mask.sum() == count
        np.testing.assert_array_equal(mask, labelled_split(n, fraction, seed=3))
    assert not np.array_equal(labelled_split(100, 0.1, 0), labelled_split(100, 0.1, 1))
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="labelled-fraction"):
            labelled_split(10, bad, 0)


def test_labelled_fraction_hides_the_same_episodes_in_pseudo_label_and_labelled_subset(cartpole):
    _, summary = pseudo_label("test/cartpole-v0", "test/pl-v0", labelled_fraction=0.3, steps=50, seed=5,
                              show_progress=False)
    labelled_subset("test/cartpole-v0", "test/lab-v0", 0.3, seed=5)
    subset = load_dataset("test/lab-v0")
    meta = load_dataset("test/pl-v0").metadata["rlkit"]["pseudo_label"]
    real_rows = [row[1] for row in meta["episodes"] if not row[4]]
    assert real_rows == subset.metadata["rlkit"]["labelled_subset"]["episodes"]
    assert len(subset) == summary["labelled_episodes"] == labelled_count(len(cartpole), 0.3)
    for ep, index in zip(subset.episodes, real_rows):
        np.testing.assert_array_equal(ep.actions, cartpole[index].actions)


# ------------------------------------------------------------------ through the CLI


def test_cli_round_trip_discrete(cartpole, capsys):
    import minari

    assert main(["dataset", "pseudo-label", "test/cartpole-v0", "--out", "test/cartpole-pl-v0",
                 "--labelled-fraction", "0.5", "--steps", "300", "--threshold", "0.9"]) == 0
    out = capsys.readouterr()
    assert "wrote dataset test/cartpole-pl-v0" in out.out and "held-out accuracy" in out.out
    data = load_dataset("test/cartpole-pl-v0")  # rlkit's checks: spaces, lengths, flags, checksums
    assert minari.load_dataset("test/cartpole-pl-v0").total_steps == data.total_steps
    meta = data.metadata["rlkit"]["pseudo_label"]
    assert data.env_id == "CartPole-v1" and data.reference_scores == (20.0, 500.0)
    assert meta["threshold"] == 0.9 and meta["labelled_episodes"] == labelled_count(len(cartpole), 0.5)
    rows = meta["episodes"]
    assert len(rows) == len(data) and meta["pseudo_labelled_episodes"] == [j for j, r in enumerate(rows) if r[4]]
    source_steps = sum(len(ep) for ep in cartpole)
    assert meta["labelled_steps"] + meta["pseudo_labelled_steps"] + meta["dropped_steps"] == source_steps
    assert data.total_steps == meta["labelled_steps"] + meta["pseudo_labelled_steps"]
    for (_, index, start, stop, pseudo), ep in zip(rows, data.episodes):
        source = cartpole[index]
        np.testing.assert_array_equal(ep.observations, source.observations[start:stop + 1])
        if not pseudo:
            assert (start, stop) == (0, len(source))
            np.testing.assert_array_equal(ep.actions, source.actions)
    # CartPole's push is visible in the next velocity: the inverse model learns it
    model = meta["inverse_model"]
    assert model["held_out_accuracy"] > 0.8 and model["hidden_actions_accuracy"] > 0.8


def test_box_actions_ensemble_threshold_drops_and_cuts(pendulum, datasets_root, capsys):
    path, summary = pseudo_label("test/pendulum-v0", "test/pendulum-pl-v0", labelled_fraction=0.5, steps=150,
                                 threshold=0.05, ensemble=3, seed=1, show_progress=False)
    data = load_dataset("test/pendulum-pl-v0")
    meta = data.metadata["rlkit"]["pseudo_label"]
    assert meta["actions"] == "box" and meta["ensemble"] == 3 and "held_out_mse" in meta["inverse_model"]
    low, high = data.action_space.low, data.action_space.high
    for ep in data.episodes:
        assert (ep.actions >= low).all() and (ep.actions <= high).all()  # regressed labels clipped to the bounds
    assert summary["pseudo_labelled_steps"] + summary["dropped_steps"] == sum(len(e) for e in pendulum) - \
        summary["labelled_steps"]
    cut = [ep for (_, i, _, stop, p), ep in zip(meta["episodes"], data.episodes) if p and stop < len(pendulum[i])]
    assert all(ep.truncations[-1] and not ep.terminations.any() for ep in cut)
    # the Decision Transformer would read cut pieces' returns-to-go and timesteps wrong: refused in one line
    assert summary["dropped_steps"] > 0
    assert main(["train", "--agent", "decision_transformer", "offline.dataset=test/pendulum-pl-v0", "env.id=null",
                 "train.total_steps=4", f"--run-dir={datasets_root.parent / 'dt-run'}"]) == 2
    assert "cut their episodes there" in capsys.readouterr().err


def test_action_free_episodes_from_metadata(pendulum, datasets_root, capsys):
    source = load_dataset("test/pendulum-v0")
    hidden = [1, 3]
    episodes = [action_free_episode(ep, source.action_space) if i in hidden else ep for i, ep in enumerate(pendulum)]
    write_dataset("test/free-v0", episodes, source.observation_space, source.action_space,
                  metadata={"action_free_episodes": hidden})
    np.testing.assert_array_equal(action_free_mask(load_dataset("test/free-v0")),
                                  [i in hidden for i in range(len(pendulum))])
    assert main(["dataset", "pseudo-label", "test/free-v0", "--out", "test/free-pl-v0", "--steps", "50"]) == 0
    meta = load_dataset("test/free-pl-v0").metadata["rlkit"]
    assert "action_free_episodes" not in meta
    assert sorted({row[1] for row in meta["pseudo_label"]["episodes"] if row[4]}) == hidden
    assert "hidden_actions_mse" not in meta["pseudo_label"]["inverse_model"]  # placeholder actions: no truth
    # training on the action-free dataset itself would learn its placeholder actions: refused in one line
    out = main(["train", "--agent", "bc", "offline.dataset=test/free-v0", "env.id=null", "train.total_steps=10",
                f"--run-dir={datasets_root.parent / 'bc-run'}"])
    assert out == 2 and not (datasets_root.parent / "bc-run").exists()
    err = capsys.readouterr().err
    assert f"2 of {len(pendulum)} episodes are action-free" in err and "rlkit dataset pseudo-label" in err, err


def test_action_free_dataset_joins(cartpole):
    source = load_dataset("test/cartpole-v0")
    free = [action_free_episode(ep, source.action_space) for ep in cartpole[:3]]
    write_dataset("test/states-v0", free, source.observation_space, source.action_space,
                  metadata={"action_free": True})
    path, summary = pseudo_label("test/cartpole-v0", "test/joined-v0", action_free="test/states-v0", steps=50,
                                 threshold=0.0, show_progress=False)
    meta = load_dataset("test/joined-v0").metadata["rlkit"]["pseudo_label"]
    assert summary["labelled_episodes"] == len(cartpole) and summary["action_free_episodes"] == 3
    assert [row[:2] for row in meta["episodes"] if row[4]] == [[1, 0], [1, 1], [1, 2]]


# ------------------------------------------------------------------ bad input: one line, exit 2, nothing written


def _fails(capsys, args, *fragments):
    assert main(["dataset", "pseudo-label", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlkit: error:") and "\n" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_bad_input_exits_2_and_writes_nothing(cartpole, capsys, datasets_root):
    before = sorted(p.relative_to(datasets_root) for p in datasets_root.rglob("*"))
    _fails(capsys, ["test/nope-v0", "--out", "test/x-v0"], "unknown dataset")
    _fails(capsys, ["test/cartpole-v0", "--out", "test/x-v0", "--labelled-fraction", "0"], "(0, 1]")
    _fails(capsys, ["test/cartpole-v0", "--out", "test/x-v0", "--labelled-fraction", "1.5"], "(0, 1]")
    _fails(capsys, ["test/cartpole-v0", "--out", "test/cartpole-v0"], "already exists")
    _fails(capsys, ["test/cartpole-v0", "--out", "not an id"], "not a dataset id")
    _fails(capsys, ["test/cartpole-v0", "--out", "test/x-v0", "--threshold", "2"], "confidence")
    _fails(capsys, ["test/cartpole-v0", "--out", "test/x-v0", "--steps", "0"], "--steps")
    assert sorted(p.relative_to(datasets_root) for p in datasets_root.rglob("*")) == before
    source = load_dataset("test/cartpole-v0")
    write_dataset("test/all-free-v0", [action_free_episode(ep, source.action_space) for ep in cartpole],
                  source.observation_space, source.action_space, metadata={"action_free": True})
    before = sorted(p.relative_to(datasets_root) for p in datasets_root.rglob("*"))
    _fails(capsys, ["test/all-free-v0", "--out", "test/x-v0"], "no labelled episodes")
    _fails(capsys, ["test/all-free-v0", "--out", "test/x-v0", "--labelled-fraction", "0.5"], "no labelled episodes")
    assert not dataset_path("test/x-v0").exists()
    assert sorted(p.relative_to(datasets_root) for p in datasets_root.rglob("*")) == before


def test_image_and_dict_observations():
    """uint8 C x H x W frames go through the small CNN (a frame shifted left or right by the action); Dict
    observations of vectors are flattened."""
    rng = np.random.default_rng(0)
    image_space, act = gym.spaces.Box(0, 255, (1, 8, 8), np.uint8), gym.spaces.Discrete(2)
    episodes = []
    for _ in range(6):
        T = 20
        actions = rng.integers(0, 2, T)
        frames = [rng.integers(0, 256, (1, 8, 8), dtype=np.uint8)]
        for a in actions:
            frames.append(np.roll(frames[-1], 1 if a else -1, axis=2))
        trunc = np.zeros(T, bool)
        trunc[-1] = True
        episodes.append(Episode(np.stack(frames), actions, np.zeros(T, np.float32), np.zeros(T, bool), trunc))
    write_dataset("test/frames-v0", episodes, image_space, act)
    _, summary = pseudo_label("test/frames-v0", "test/frames-pl-v0", labelled_fraction=0.5, steps=30,
                              threshold=0.0, show_progress=False)
    assert load_dataset("test/frames-pl-v0").total_steps == 120 and "held_out_accuracy" in summary["inverse_model"]

    dict_space = gym.spaces.Dict({"position": gym.spaces.Box(-5, 5, (2,), np.float32),
                                  "velocity": gym.spaces.Box(-5, 5, (2,), np.float32)})
    box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    dict_episodes = []
    for _ in range(4):
        T = 15
        actions = rng.uniform(-1, 1, (T, 2)).astype(np.float32)
        velocity = np.concatenate([np.zeros((1, 2)), np.cumsum(actions, axis=0) * 0.1]).astype(np.float32)
        position = np.cumsum(velocity, axis=0).astype(np.float32) * 0.1
        trunc = np.zeros(T, bool)
        trunc[-1] = True
        dict_episodes.append(Episode({"position": position, "velocity": velocity}, actions, np.zeros(T, np.float32),
                                     np.zeros(T, bool), trunc))
    write_dataset("test/dict-v0", dict_episodes, dict_space, box)
    _, summary = pseudo_label("test/dict-v0", "test/dict-pl-v0", labelled_fraction=0.5, steps=30,
                              show_progress=False)
    data = load_dataset("test/dict-pl-v0")
    assert data.total_steps == 60 and isinstance(data.episodes[-1].observations, dict)
    assert "hidden_actions_mse" in summary["inverse_model"]
