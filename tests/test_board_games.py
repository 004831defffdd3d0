"""Two-player board games from one seat (envs/board_games.py), action masks in DQN's acting and targets
(agents/dqn.py), the self-play pool (rlkit/training/selfplay.py) and `rlkit eval --opponent` (issue 20)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("pettingzoo")

import rlkit.envs  # noqa: F401,E402  (registers the ids)
from rlkit.agents.dqn import DQN, DQNConfig  # noqa: E402
from rlkit.cli import main  # noqa: E402
from rlkit.contract.agent import StepRecord  # noqa: E402
from rlkit.envs.board_games import connect_four_heuristic, tictactoe_heuristic  # noqa: E402
from rlkit.experience.replay import Transitions  # noqa: E402
from rlkit.runfiles.checkpoint import load_checkpoint  # noqa: E402

GAMES = ["rlkit/ConnectFour-v0", "rlkit/TicTacToe-v0", "rlkit/LeducHoldem-v0"]


# ------------------------------------------------------------------ the envs


@pytest.mark.parametrize("env_id", GAMES)
def test_seat_envs_pass_gymnasium_and_sb3_checks(env_id):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(env_id, illegal_action="lose")  # both checkers step random (possibly masked) actions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env)


@pytest.mark.parametrize("module", ["connect_four_v3", "tictactoe_v3", "leduc_holdem_v4"])
def test_pettingzoo_api_test_on_the_wrapped_games(module):
    import importlib

    from pettingzoo.test import api_test

    api_test(importlib.import_module(f"pettingzoo.classic.{module}").env(), num_cycles=50)


@pytest.mark.parametrize("env_id", GAMES)
def test_random_games_end_with_an_outcome_and_masks_hold(env_id):
    env = gym.make(env_id, opponent="random")
    rng = np.random.default_rng(0)
    seats = set()
    for game in range(40):
        obs, info = env.reset(seed=game)
        seats.add(info["seat"])
        total, done = 0.0, False
        while not done:
            assert obs["action_mask"].any(), "the learner is asked to move with no legal move"
            obs, reward, done, truncated, info = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
            total += reward
        assert info["outcome"] == int(np.sign(total))
    assert seats == {0, 1}  # the learner plays both sides


def test_an_illegal_action_is_one_clear_error_or_a_loss():
    env = gym.make("rlkit/TicTacToe-v0", opponent="random", learner_seat=0)
    obs, _ = env.reset(seed=0)
    env.step(4)
    obs = env.unwrapped._obs
    taken = int(np.flatnonzero(obs["action_mask"] == 0)[0])
    with pytest.raises(ValueError, match=rf"action {taken} is not allowed here .* allows \["):
        env.step(taken)
    with pytest.raises(ValueError, match="is not one of the 9 actions"):
        env.step(9)
    lose = gym.make("rlkit/TicTacToe-v0", opponent="random", learner_seat=0, illegal_action="lose")
    lose.reset(seed=0)
    lose.step(4)
    taken = int(np.flatnonzero(lose.unwrapped._obs["action_mask"] == 0)[0])
    _, reward, terminated, _, info = lose.step(taken)
    assert (reward, terminated, info["outcome"], info["illegal_action"]) == (-1.0, True, -1, True)


def test_a_loss_on_the_opponents_move_arrives_on_that_step_and_matches_the_game():
    """The learner's -1 comes on the step whose opponent reply ends the game, and equals PettingZoo's own reward."""
    env = gym.make("rlkit/ConnectFour-v0", opponent="heuristic", learner_seat=1)
    losses = 0
    for game in range(30):
        obs, _ = env.reset(seed=game)
        done = False
        while not done:  # the learner always plays the leftmost legal column: the heuristic wins fast
            obs, reward, done, _, info = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
        inner = env.unwrapped
        assert reward == inner.game.rewards[inner.learner] == info["outcome"]
        losses += info["outcome"] == -1
    assert losses >= 25


def test_an_illegal_move_that_loses_ends_the_game():
    env = gym.make("rlkit/TicTacToe-v0", opponent="random", learner_seat=0, illegal_action="lose")
    env.reset(seed=0)
    env.step(4)
    taken = int(np.flatnonzero(env.unwrapped._obs["action_mask"] == 0)[0])
    assert env.step(taken)[2]
    with pytest.raises(RuntimeError, match="game is over"):
        env.step(int(np.flatnonzero(env.unwrapped._obs["action_mask"])[0]))


def test_leduc_redeals_replay_with_their_own_opponents():
    """Leduc deals the opponent ends before the learner moves are dealt again, each with its own opponent draw: a
    replay (restore the RNG state, force the checkpointed opponents, reset) must give the same game."""
    import copy as copy_module

    class OnePool:  # a pool of one snapshot whose 'player' folds when it can, else calls
        def __len__(self):
            return 1

        def draw(self, u):
            return 0, {}

        def act(self, snapshot_id, tensors, obs):
            legal = np.flatnonzero(obs["action_mask"])
            return int(2 if 2 in legal else legal[0])

    env = gym.make("rlkit/LeducHoldem-v0", opponent="selfplay", opponent_mix={"pool": 0.5, "random": 0.5}).unwrapped
    env.pool = OnePool()
    env.reset(seed=0)
    redealt = 0
    for _ in range(300):
        rng_state = copy_module.deepcopy(env.np_random.bit_generator.state)
        obs, info = env.reset()
        state = env.opponent_state()
        redealt += len(state["deals"]) > 1
        env.np_random.bit_generator.state = rng_state
        env.force_next_opponent(copy_module.deepcopy(state))
        replayed, replayed_info = env.reset()
        assert replayed_info == info and all(np.array_equal(replayed[k], obs[k]) for k in obs)
        assert env.opponent_state() == state
    assert redealt > 0


def test_bad_env_settings_are_refused():
    for kwargs, match in (({"opponent": "nobody"}, "opponent must be"), ({"learner_seat": 2}, "learner_seat"),
                          ({"opponent_mix": {"pool": -1}}, "opponent_mix"), ({"pool_size": 0}, "pool_size"),
                          ({"game": "leduc_holdem", "opponent": "heuristic"}, "no heuristic")):
        with pytest.raises(ValueError, match=match):
            gym.make("rlkit/TicTacToe-v0", **kwargs) if "game" not in kwargs else \
                gym.make("rlkit/LeducHoldem-v0", **{k: v for k, v in kwargs.items() if k != "game"})


def _planes(mine, theirs, shape):
    planes = np.zeros((*shape, 2), dtype=np.int8)
    for r, c in mine:
        planes[r, c, 0] = 1
    for r, c in theirs:
        planes[r, c, 1] = 1
    return planes


def test_heuristics_win_if_they_can_and_block_if_they_must():
    rng = np.random.default_rng(0)
    full = np.ones(9, np.int8)
    # tic-tac-toe: squares 0,1 mine -> 2 wins; squares 3,4 theirs -> block at 5
    board = _planes([(0, 0), (0, 1)], [(1, 0), (1, 1)], (3, 3))
    mask = full.copy()
    mask[[0, 1, 3, 4]] = 0
    assert tictactoe_heuristic({"observation": board, "action_mask": mask}, rng) == 2  # a win beats a block
    board = _planes([(2, 2)], [(1, 0), (1, 1)], (3, 3))
    mask = full.copy()
    mask[[8, 3, 4]] = 0
    assert tictactoe_heuristic({"observation": board, "action_mask": mask}, rng) == 5
    # connect four: rows are 0 (top) .. 5 (bottom); three of theirs on the bottom row at columns 0-2 -> block at 3
    board = _planes([(5, 6), (4, 6)], [(5, 0), (5, 1), (5, 2)], (6, 7))
    assert connect_four_heuristic({"observation": board, "action_mask": np.ones(7, np.int8)}, rng) == 3
    # three of mine stacked in column 6 -> win there (over blocking their three in a row)
    board = _planes([(5, 6), (4, 6), (3, 6)], [(5, 0), (5, 1), (5, 2)], (6, 7))
    assert connect_four_heuristic({"observation": board, "action_mask": np.ones(7, np.int8)}, rng) == 6
    # gravity: their three on row 4 is completed at (4, 3), which is not playable while (5, 3) is empty: no forced
    # block (random among the columns); once (5, 3) is filled, column 3 lands there and must be blocked
    floating = _planes([(5, 0), (5, 2)], [(5, 1), (4, 0), (4, 1), (4, 2)], (6, 7))
    picks = {connect_four_heuristic({"observation": floating, "action_mask": np.ones(7, np.int8)},
                                    np.random.default_rng(seed)) for seed in range(60)}
    assert len(picks) > 3
    grounded = _planes([(5, 0), (5, 2), (5, 3)], [(5, 1), (4, 0), (4, 1), (4, 2)], (6, 7))
    picks = {connect_four_heuristic({"observation": grounded, "action_mask": np.ones(7, np.int8)},
                                    np.random.default_rng(seed)) for seed in range(20)}
    assert picks == {3}


# ------------------------------------------------------------------ DQN with action masks


def _dqn(double: bool, n_actions: int = 7, seed: int = 0) -> DQN:
    space = gym.spaces.Dict({"observation": gym.spaces.Box(0, 1, (6,), np.float32),
                             "action_mask": gym.spaces.Box(0, 1, (n_actions,), np.int8)})
    torch.manual_seed(seed)
    return DQN(DQNConfig(hidden=[32], double=double, eps_decay_steps=0, eps_end=0.5), space,
               gym.spaces.Discrete(n_actions), seed=seed)


def _random_masks(rng, n, n_actions, allow_empty=False):
    masks = rng.random((n, n_actions)) < rng.uniform(0.1, 0.9)
    if not allow_empty:
        masks[np.arange(n), rng.integers(n_actions, size=n)] = True
    return masks.astype(np.int8)


def test_masked_actions_are_never_chosen_brute_force():
    rng = np.random.default_rng(0)
    agent = _dqn(double=False)
    for trial in range(200):
        n = int(rng.integers(1, 40))
        masks = _random_masks(rng, n, 7)
        obs = {"observation": rng.random((n, 6)).astype(np.float32), "action_mask": masks}
        for explore, epsilon in ((True, None), (False, None), (False, 1.0), (False, 0.3)):
            actions = agent.act(StepRecord.from_arrays(obs, "cpu"), explore=explore, epsilon=epsilon)
            assert masks[np.arange(n), actions].all(), (trial, explore, epsilon)
    # epsilon = 1: uniform over the allowed actions (each allowed action of a 3-of-7 mask about 1/3 of the time)
    mask = np.zeros((3000, 7), np.int8)
    mask[:, [1, 4, 6]] = 1
    actions = agent.act(StepRecord.from_arrays({"observation": np.zeros((3000, 6), np.float32),
                                                "action_mask": mask}, "cpu"), explore=False, epsilon=1.0)
    counts = np.bincount(actions, minlength=7)
    assert counts[[0, 2, 3, 5]].sum() == 0 and np.all(np.abs(counts[[1, 4, 6]] / 3000 - 1 / 3) < 0.04)


@pytest.mark.parametrize("double", [False, True])
def test_targets_never_maximise_over_masked_actions_brute_force(double):
    rng = np.random.default_rng(1)
    agent = _dqn(double=double)
    with torch.no_grad():  # a target net unlike the online one, so double and plain targets differ
        for p in agent.target_net.parameters():
            p.add_(torch.randn_like(p))
    for trial in range(100):
        b = int(rng.integers(1, 64))
        masks = _random_masks(rng, b, 7, allow_empty=True)
        next_obs = {"observation": torch.as_tensor(rng.random((b, 6)), dtype=torch.float32),
                    "action_mask": torch.as_tensor(masks)}
        rewards = torch.as_tensor(rng.normal(size=b), dtype=torch.float32)
        discounts = torch.as_tensor(rng.choice([0.0, 0.99], size=b), dtype=torch.float32)
        batch = Transitions(obs=next_obs, actions=torch.zeros(b, dtype=torch.int64), rewards=rewards,
                            next_obs=next_obs, discounts=discounts, weights=torch.ones(b),
                            indices=torch.zeros(b, dtype=torch.int64))
        target = agent.td_target(batch)
        with torch.no_grad():
            q_target = agent.target_net(next_obs).numpy()
            q_select = agent.q_net(next_obs).numpy() if double else q_target
        for i in range(b):
            allowed = np.flatnonzero(masks[i])
            if len(allowed) == 0:
                expected = rewards[i].item()  # nothing to bootstrap from
            else:
                best = allowed[np.argmax(q_select[i, allowed])]
                expected = rewards[i].item() + discounts[i].item() * q_target[i, best]
            assert target[i].item() == pytest.approx(expected, abs=1e-5), (trial, i)


def test_the_step_record_reads_the_mask_from_dict_observations():
    obs = {"observation": np.zeros((2, 3), np.float32), "action_mask": np.array([[1, 0], [0, 1]], np.int8)}
    record = StepRecord.from_arrays(obs, "cpu")
    assert record.action_mask.dtype == torch.bool and record.action_mask.tolist() == [[True, False], [False, True]]
    with pytest.raises(ValueError, match="action mask has shape"):
        _dqn(double=False, n_actions=7).act(record, explore=False)


# ------------------------------------------------------------------ training, self-play, resume, eval


def _config(tmp_path: Path, steps: int = 1200, pool: str = "pool_size: 3, snapshot_every: 200",
            mix: str = "pool: 0.6, random: 0.2, heuristic: 0.2") -> Path:
    config = tmp_path / "ttt.yaml"
    config.write_text(f"""
seed: 3
env:
  id: rlkit/TicTacToe-v0
  num_envs: 4
  kwargs: {{opponent: selfplay, opponent_mix: {{{mix}}}, {pool}}}
agent: {{name: dqn, hidden: [32], eps_decay_steps: 500, target_update_every: 50}}
train:
  total_steps: {steps}
  learning_starts: 100
  batch_size: 32
  train_every: 4
  eval_every: 600
  eval_episodes: 20
  checkpoint_every: 300
  eval_env_kwargs: {{opponent: random}}
log: {{progress: false, tensorboard: false, plot: false}}
""")
    return config


def _records(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in ("time", "sps")}
            for line in path.read_text().splitlines()]


def test_selfplay_pool_grows_and_a_resumed_run_is_the_same_run(tmp_path):
    config = _config(tmp_path)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", str(config), f"--run-dir={straight}"]) == 0
    state = load_checkpoint(straight / "checkpoints" / "latest.pt")
    pool = state["collector"]["selfplay"]
    steps = pool["snapshot_steps"].tolist()  # one per 200 real steps crossed (a vector step adds up to 4)
    assert len(pool["snapshots"]) == 3 and [s // 200 for s in steps] == [4, 5, 6]  # the oldest three dropped
    assert main(["train", str(config), f"--run-dir={split}", "train.total_steps=700"]) == 0
    assert main(["train", "--resume", str(split), "train.total_steps=1200"]) == 0
    first_end = max(r["step"] for r in _records(split / "metrics.jsonl") if r["kind"] == "eval" and r["step"] < 1000)
    resumed_records = [r for r in _records(split / "metrics.jsonl")  # minus the first part's own final evaluation
                       if not (r["kind"] == "eval" and r["step"] == first_end)]
    assert resumed_records == _records(straight / "metrics.jsonl")
    resumed = load_checkpoint(split / "checkpoints" / "latest.pt")["collector"]["selfplay"]
    assert all(torch.equal(a[k], b[k]) for a, b in zip(resumed["snapshots"], pool["snapshots"]) for k in a)
    evals = [r for r in _records(straight / "metrics.jsonl") if r["kind"] == "eval"]
    assert all({"win_rate", "draw_rate", "loss_rate"} <= set(r) for r in evals)


def test_resume_meets_the_same_opponents_when_the_pool_turns_over_mid_game(tmp_path):
    """A snapshot every 13 steps into a pool of one: games in progress at the checkpoint play snapshots the pool has
    since dropped or that were drawn when it held fewer; the env replay must meet exactly those again."""
    config = _config(tmp_path, steps=900, pool="pool_size: 3, snapshot_every: 50", mix="pool: 0.9, random: 0.1")
    fast = ["train.checkpoint_every=0", "train.eval_every=0", "agent.lr=0.01"]  # snapshots far apart: a wrong one
    # plays other moves (before the fix the replay then asked a finished game to go on, or played a masked move)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", str(config), f"--run-dir={straight}", *fast]) == 0
    assert main(["train", str(config), f"--run-dir={split}", "train.total_steps=455", *fast]) == 0
    opponents = load_checkpoint(split / "checkpoints" / "latest.pt")["collector"]["selfplay"]["opponents"]
    assert {d["kind"] for o in opponents for d in o["deals"]} & {"pool"}
    assert main(["train", "--resume", str(split), "train.total_steps=900"]) == 0
    resumed = [r for r in _records(split / "metrics.jsonl") if not (r["kind"] == "eval" and r["step"] < 900)]
    assert resumed == [r for r in _records(straight / "metrics.jsonl") if not (r["kind"] == "eval" and r["step"] < 900)]


def test_a_tampered_pool_is_refused(tmp_path, capsys):
    config = _config(tmp_path, steps=500)
    run = tmp_path / "run"
    assert main(["train", str(config), f"--run-dir={run}"]) == 0
    path = run / "checkpoints" / "latest.pt"
    state = torch.load(path, weights_only=True)
    first = state["collector"]["selfplay"]["snapshots"][0]
    key = next(iter(first))
    first[key] = torch.zeros(3)
    torch.save(state, path)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "train.total_steps=800"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "self-play snapshot 0 does not fit" in err[0]


@pytest.mark.parametrize("tamper", ["fixed opponent", "duplicate ids", "no opponents"])
def test_tampered_selfplay_state_is_one_line(tmp_path, capsys, tamper):
    config = _config(tmp_path, steps=500)
    run = tmp_path / "run"
    assert main(["train", str(config), f"--run-dir={run}"]) == 0
    path = run / "checkpoints" / "latest.pt"
    state = torch.load(path, weights_only=True)
    selfplay = state["collector"]["selfplay"]
    if tamper == "fixed opponent":
        selfplay["opponents"][0] = {"deals": [{"kind": "fixed", "id": -1}]}
    elif tamper == "duplicate ids":
        selfplay["snapshot_ids"] = torch.zeros_like(selfplay["snapshot_ids"])
    else:
        del selfplay["opponents"]
    torch.save(state, path)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "train.total_steps=800"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("self-play" in err[0] or "board-game opponent" in err[0]), err


def test_eval_pits_a_run_against_random_heuristic_and_another_run(tmp_path, capsys):
    config = _config(tmp_path, steps=400)
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", str(config), f"--run-dir={a}"]) == 0
    assert main(["train", str(config), f"--run-dir={b}", "--seed", "4"]) == 0
    capsys.readouterr()
    for opponent in ("random", "heuristic", "perfect", str(b)):
        assert main(["eval", str(a), "--opponent", opponent, "--games", "30"]) == 0
        out = capsys.readouterr().out
        assert f"against {opponent}" in out and "win/draw/loss" in out
        result = json.loads((a / "eval.json").read_text())
        assert len(result["returns"]) == 30
        assert result["win_rate"] + result["draw_rate"] + result["loss_rate"] == pytest.approx(1.0)
    assert main(["eval", str(a), "--opponent", str(tmp_path / "nowhere"), "--games", "5"]) == 2
    c4 = tmp_path / "c4"
    assert main(["train", str(config), f"--run-dir={c4}", "env.id=rlkit/ConnectFour-v0", "train.total_steps=200"]) == 0
    capsys.readouterr()
    assert main(["eval", str(a), "--opponent", str(c4), "--games", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained on other spaces" in err[0]
    assert main(["eval", str(c4), "--opponent", "perfect", "--games", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no perfect opponent" in err[0]
    cartpole = tmp_path / "cp"
    assert main(["train", "configs/dqn_cartpole.yaml", f"--run-dir={cartpole}", "train.total_steps=300",
                 "log.progress=false", "log.plot=false", "log.tensorboard=false"]) == 0
    capsys.readouterr()
    assert main(["eval", str(cartpole), "--opponent", "random", "--episodes", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a two-player game" in err[0]


def test_masks_and_agent_ids_from_a_vector_envs_infos_reach_the_step_record():
    """Multi-agent rows (rlkit.envs.multiagent) report ``agent_id`` and ``action_mask`` in their infos: the collector
    hands them to ``act`` with the observations they belong to, and DQN never picks a masked action."""
    from rlkit.training.collector import Collector

    class Rows:  # the least of a vector env: 6 rows, random masks each step
        num_envs = 6

        def __init__(self):
            self.rng = np.random.default_rng(0)
            self.given: list[tuple[np.ndarray, np.ndarray]] = []

        def _infos(self):
            mask = _random_masks(self.rng, 6, 7).astype(bool)
            self.given.append((mask, None))
            return {"agent_id": np.arange(6) % 3, "action_mask": mask}

        def reset(self, seed=None):
            return {"observation": np.zeros((6, 6), np.float32), "action_mask": np.ones((6, 7), np.int8)}, \
                self._infos()

        def step(self, actions):
            mask = self.given[-1][0]
            self.given[-1] = (mask, np.asarray(actions))
            obs = {"observation": self.rng.random((6, 6)).astype(np.float32), "action_mask": np.ones((6, 7), np.int8)}
            return obs, np.zeros(6), np.zeros(6, bool), np.zeros(6, bool), self._infos()

    envs = Rows()
    agent = _dqn(double=False)
    seen = []
    act = agent.act
    agent.act = lambda step, explore, epsilon=None: seen.append(step) or act(step, explore, epsilon)
    collector = Collector(envs, seed=0)
    for _ in range(30):
        collector.step(agent, explore=True)
    for (mask, actions), step in zip(envs.given, seen):
        assert torch.equal(step.action_mask, torch.as_tensor(mask)) and step.agent_id.tolist() == [0, 1, 2, 0, 1, 2]
        assert mask[np.arange(6), actions].all()


def test_an_illegal_leduc_move_costs_at_least_the_worst_legal_loss():
    """Under illegal_action=lose an illegal move must never be cheaper than a legal loss (else an unmasked learner
    learns to fold big pots by cheating): Leduc's is -7 (14 chips / big blind 2), below every legal game's return."""
    from rlkit.envs.board_games import WORST_REWARD

    env = gym.make("rlkit/LeducHoldem-v0", opponent="random", illegal_action="lose")
    rng = np.random.default_rng(0)
    returns = []
    for game in range(300):
        obs, _ = env.reset(seed=game)
        total, done = 0.0, False
        while not done:
            # raise whenever allowed: the largest pots, where the worst legal loss lives
            legal = np.flatnonzero(obs["action_mask"])
            action = 1 if 1 in legal and rng.random() < 0.8 else int(rng.choice(legal))
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        returns.append(total)
    assert min(returns) >= WORST_REWARD["leduc_holdem"] and min(returns) < -2  # big legal losses happen
    obs, _ = env.reset(seed=1)
    illegal = int(np.flatnonzero(obs["action_mask"] == 0)[0])
    _, reward, terminated, _, info = env.step(illegal)
    assert (reward, terminated, info["illegal_action"]) == (WORST_REWARD["leduc_holdem"], True, True)


def test_the_perfect_tictactoe_player_never_loses_and_draws_itself():
    """``opponent: perfect`` (game-tree search): as the learner's policy it never loses to random or to itself, it
    takes a win and blocks, and games where it cannot exist are refused."""
    from rlkit.envs.board_games import TwoPlayerSeatEnv, tictactoe_perfect

    rng = np.random.default_rng(0)
    for opponent, outcomes in (("random", {1, 0}), ("perfect", {0})):
        env = TwoPlayerSeatEnv("tictactoe", opponent=opponent)
        seen = set()
        for game in range(150):
            obs, _ = env.reset(seed=game)
            done = False
            while not done:
                obs, _, done, _, info = env.step(tictactoe_perfect(obs, rng))
            seen.add(info["outcome"])
        assert seen <= outcomes and -1 not in seen
    board = np.zeros((3, 3, 2), dtype=np.int8)
    board[0, 0, 0] = board[0, 1, 0] = 1           # mine: a win at square 2
    board[1, 0, 1] = board[1, 1, 1] = 1           # theirs: a threat at square 5
    mask = (board.sum(axis=2) == 0).reshape(-1).astype(np.int8)
    assert tictactoe_perfect({"observation": board, "action_mask": mask}, rng) == 2
    board[0, 1, 0] = 0
    board[2, 2, 0] = 1
    mask = (board.sum(axis=2) == 0).reshape(-1).astype(np.int8)
    assert tictactoe_perfect({"observation": board, "action_mask": mask}, rng) == 5
    with pytest.raises(ValueError, match="no perfect opponent"):
        TwoPlayerSeatEnv("connect_four", opponent="perfect")
    with pytest.raises(ValueError, match="no perfect opponent"):
        TwoPlayerSeatEnv("connect_four", opponent="selfplay", opponent_mix={"perfect": 1.0})
    mixed = TwoPlayerSeatEnv("tictactoe", opponent="selfplay", opponent_mix={"random": 1.0, "perfect": 1.0})
    assert {mixed.reset(seed=s)[1]["opponent"] for s in range(20)} == {"random", "perfect"}
