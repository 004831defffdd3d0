"""Two-player turn-based games (PettingZoo classic, AEC API) as single-agent Gymnasium envs: the learner sits in
one seat, an opponent plays the other inside the env.

Why a seat view and not one row per player: rlkit's replay keeps one stream per env row, and a turn-based
player's transition runs from *its* observation at its turn to its observation at its next turn, after the other
player moved. In a seat env that is exactly one ``step``: the learner moves, the opponent answers, the learner
sees the board again; the reward is the learner's (+1 win, -1 loss, 0 draw, at the end; in Leduc hold'em the
chips won or lost, about -7 to +7). A Leduc deal the opponent ends before the learner's first move (a fold) is dealt
again, so win rates there leave those games out. Self-play is then the
opponent being the learner's own past snapshots (:class:`rlkit.training.selfplay.SelfPlayPool`), sampled per game
with a random and a heuristic opponent mixed in, as in PettingZoo's SB3 self-play tutorials and AlphaStar's
league in miniature.

Observations are the game's own, from the learner's point of view (PettingZoo's classic games give the observing
player's pieces in plane 0): ``{"observation": ..., "action_mask": int8 [n_actions]}``. rlkit's collector reads
``action_mask`` into the step record, DQN never chooses a masked action and never maximises over one in its
targets. An action the mask forbids is refused with one clear error (a user policy's bug), not handed to the
game, which would end the episode with a penalty or crash.

Seat, opponent and the opponent's moves are drawn from the env's ``np_random``, so rlkit's exact resume (env
replay from the episode's start RNG state) reproduces a game, pool snapshots included (the pool is in the
checkpoint).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import gymnasium as gym
import numpy as np

OPPONENTS = ("random", "heuristic", "perfect", "selfplay")


def _game(name: str):
    """A fresh PettingZoo AEC env of a classic two-player game (imported lazily: pettingzoo is an extra)."""
    import warnings

    try:
        with warnings.catch_warnings():  # pettingzoo's versioned modules warn about its own old creation API
            warnings.simplefilter("ignore", DeprecationWarning)
            module = _game_module(name)
    except ImportError as exc:
        raise ImportError(f"the game '{name}' needs PettingZoo: pip install 'rlkit-toolkit[multiagent]' "
                          f"({exc})") from None
    return module.env()


def _game_module(name: str):
    if name == "connect_four":
        from pettingzoo.classic import connect_four_v3 as module
    elif name == "tictactoe":
        from pettingzoo.classic import tictactoe_v3 as module
    elif name == "leduc_holdem":
        from pettingzoo.classic import leduc_holdem_v4 as module
    else:
        raise ValueError(f"unknown game '{name}' (connect_four, tictactoe, leduc_holdem)")
    return module


# ------------------------------------------------------------------ heuristic opponents: win if you can, block if you must


def _lines_complete(board: np.ndarray, length: int) -> bool:
    """Whether the bool ``board`` [H, W] holds ``length`` in a row (horizontal, vertical or diagonal)."""
    h, w = board.shape
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        for r in range(h):
            for c in range(w):
                rr, cc = r + dr * (length - 1), c + dc * (length - 1)
                if 0 <= rr < h and 0 <= cc < w and all(board[r + dr * i, c + dc * i] for i in range(length)):
                    return True
    return False


def _connect_four_cell(planes: np.ndarray, column: int) -> tuple[int, int] | None:
    occupied = planes[:, :, 0] | planes[:, :, 1]
    empty = np.flatnonzero(~occupied[:, column])
    return (int(empty[-1]), column) if len(empty) else None  # pieces fall to the highest free row index


def completing_moves(planes: np.ndarray, plane: int, legal: np.ndarray, cell: Callable, length: int) -> list[int]:
    """The legal moves that complete a line of ``length`` for the pieces of ``plane`` (0: the mover's, an
    immediate win; 1: the opponent's, a move that must be blocked), in action order."""
    out = []
    for action in legal:
        where = cell(planes, int(action))
        if where is None:
            continue
        board = planes[:, :, plane].copy()
        board[where] = True
        if _lines_complete(board, length):
            out.append(int(action))
    return out


def _one_ply(obs: dict[str, np.ndarray], rng: np.random.Generator, cell: Callable, length: int) -> int:
    planes = np.asarray(obs["observation"]).astype(bool)
    legal = np.flatnonzero(np.asarray(obs["action_mask"]))
    for plane in (0, 1):  # 0: my pieces (a win), 1: the opponent's (a block)
        moves = completing_moves(planes, plane, legal, cell, length)
        if moves:
            return moves[0]
    return int(rng.choice(legal))


def connect_four_heuristic(obs: dict[str, np.ndarray], rng: np.random.Generator) -> int:
    """Win if you can, block if you must, else a uniformly random legal column."""
    return _one_ply(obs, rng, _connect_four_cell, 4)


def tictactoe_heuristic(obs: dict[str, np.ndarray], rng: np.random.Generator) -> int:
    """Win if you can, block if you must, else a uniformly random legal square (square i = row i // 3, col i % 3)."""
    return _one_ply(obs, rng, lambda planes, action: (action // 3, action % 3), 3)


_TTT_LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))


def _ttt_winner(board: tuple[int, ...]) -> int:
    for a, b, c in _TTT_LINES:
        if board[a] != 0 and board[a] == board[b] == board[c]:
            return board[a]
    return 0


@functools.lru_cache(maxsize=None)
def _ttt_value(board: tuple[int, ...]) -> int:
    """Negamax value of a tic-tac-toe position for the player to move (+1 its pieces, -1 the other's): +1 a forced
    win, 0 a draw, -1 a forced loss. 5,478 reachable positions, each solved once."""
    if _ttt_winner(board):
        return -1  # the player who just moved completed a line
    if 0 not in board:
        return 0
    return max(-_ttt_value(tuple(-v for v in board[:i] + (1,) + board[i + 1:])) for i in range(9) if board[i] == 0)


def tictactoe_perfect(obs: dict[str, np.ndarray], rng: np.random.Generator) -> int:
    """A perfect player (game-tree search to the end): a uniformly random one of the moves with the best
    negamax value. It never loses, wins whenever the other player errs into a lost position, and sets up forks —
    the worst-case opponent that "never lose" training needs (a random or one-ply opponent seldom punishes a
    move that allows a fork, so their expected value barely sees the mistake)."""
    planes = np.asarray(obs["observation"]).astype(int)
    board = tuple(int(planes[i // 3, i % 3, 0] - planes[i // 3, i % 3, 1]) for i in range(9))
    legal = np.flatnonzero(np.asarray(obs["action_mask"]))
    values = [-_ttt_value(tuple(-v for v in board[:a] + (1,) + board[a + 1:])) for a in legal]
    best = [int(a) for a, v in zip(legal, values) if v == max(values)]
    return best[int(rng.integers(len(best)))]


PERFECT: dict[str, Callable[[dict[str, np.ndarray], np.random.Generator], int]] = {"tictactoe": tictactoe_perfect}
"""Games with an exact (solved) opponent: ``opponent: perfect``, ``opponent_mix: {perfect: w}``, ``rlkit eval
--opponent perfect``. Connect four is solved too but not by a search a CPU runs per move, so it has none."""

WORST_REWARD: dict[str, float] = {"connect_four": -1.0, "tictactoe": -1.0, "leduc_holdem": -7.0}
"""The lowest return a legal game can give the learner: what an illegal move costs under ``illegal_action: lose``,
so that it is never cheaper than a legal loss. Leduc hold'em pays chips / big blind (rlcard): the most a player can
put in is the big blind 2 + two raises of 2 in round one + two raises of 4 in round two = 14 chips, i.e. -7."""

HEURISTICS: dict[str, Callable[[dict[str, np.ndarray], np.random.Generator], int]] = {
    "connect_four": connect_four_heuristic, "tictactoe": tictactoe_heuristic}


def random_legal(obs: dict[str, np.ndarray], rng: np.random.Generator) -> int:
    return int(rng.choice(np.flatnonzero(np.asarray(obs["action_mask"]))))


# ------------------------------------------------------------------ the seat env


class TwoPlayerSeatEnv(gym.Env):
    """A PettingZoo classic two-player game from one seat; the opponent moves inside ``step``.

    ``opponent``: ``random``, ``heuristic`` (win/block one-ply, where the game has one) or ``selfplay``: each game
    draws its opponent from ``opponent_mix`` (weights of ``pool``, ``random``, ``heuristic``, ``perfect``); ``pool`` is a past
    snapshot of the learner from the :class:`~rlkit.training.selfplay.SelfPlayPool` the collector attaches (random
    until the pool holds one). ``learner_seat``: 0, 1, or None (drawn per game, so the learner plays both sides).
    ``info["outcome"]`` at the end of a game: 1 win, 0 draw, -1 loss (the learner's). ``illegal_action``: ``error``
    (a ValueError naming the legal actions) or ``lose`` (the game ends as a loss with the game's worst reward,
    :data:`WORST_REWARD`: -1 in the board games, as PettingZoo's ``TerminateIllegalWrapper`` gives, -7 in Leduc
    hold'em, so that an illegal move never costs less than a legal loss; for unmasked learners, and for SB3's
    ``check_env``, which steps random actions).
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 2}
    wants_selfplay_pool = True  # the collector attaches a pool to envs whose opponent is "selfplay"

    def __init__(self, game: str = "connect_four", opponent: str = "random", learner_seat: int | None = None,
                 opponent_mix: dict[str, float] | None = None, pool_size: int = 10, snapshot_every: int = 5_000,
                 opponent_epsilon: float = 0.0, illegal_action: str = "error", render_mode: str | None = None) -> None:
        if render_mode not in (None, "ansi", "rgb_array"):
            raise ValueError(f"render_mode must be 'ansi', 'rgb_array' or None, got {render_mode!r}")
        self.render_mode = render_mode
        if opponent not in OPPONENTS:
            raise ValueError(f"opponent must be one of {', '.join(OPPONENTS)}, got {opponent!r}")
        if opponent == "heuristic" and game not in HEURISTICS:
            raise ValueError(f"no heuristic opponent for '{game}' (there is one for {', '.join(HEURISTICS)})")
        if opponent == "perfect" and game not in PERFECT:
            raise ValueError(f"no perfect opponent for '{game}' (there is one for {', '.join(PERFECT)})")
        if illegal_action not in ("error", "lose"):
            raise ValueError(f"illegal_action must be 'error' or 'lose', got {illegal_action!r}")
        self.illegal_action = illegal_action
        if learner_seat not in (None, 0, 1):
            raise ValueError(f"learner_seat must be 0, 1 or null, got {learner_seat!r}")
        mix = dict(opponent_mix or {"pool": 0.8, "random": 0.1, "heuristic": 0.1})
        unknown = sorted(set(mix) - {"pool", "random", "heuristic", "perfect"})
        if unknown or any(not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0 for v in mix.values()) \
                or sum(mix.values()) <= 0:
            raise ValueError(f"opponent_mix must map pool/random/heuristic/perfect to weights >= 0 with a positive sum, "
                             f"got {mix}")
        if mix.get("heuristic", 0) > 0 and game not in HEURISTICS:
            mix["random"] = mix.get("random", 0) + mix.pop("heuristic")
        if mix.get("perfect", 0) > 0 and game not in PERFECT:
            raise ValueError(f"opponent_mix: no perfect opponent for '{game}' (there is one for {', '.join(PERFECT)})")
        if int(pool_size) < 1 or int(snapshot_every) < 1:
            raise ValueError(f"pool_size and snapshot_every must be >= 1, got {pool_size}, {snapshot_every}")
        if not 0.0 <= float(opponent_epsilon) <= 1.0:
            raise ValueError(f"opponent_epsilon must lie in [0, 1], got {opponent_epsilon}")
        self.game_name, self.opponent_kind, self.learner_seat = game, opponent, learner_seat
        self.opponent_mix = mix
        self.pool_size, self.snapshot_every = int(pool_size), int(snapshot_every)
        self.opponent_epsilon = float(opponent_epsilon)
        self.pool = None  # a SelfPlayPool, attached by the collector
        self.game = _game(game)
        self.game.reset(seed=0)
        first = self.game.possible_agents[0]
        game_obs_space = self.game.observation_space(first)
        obs_space = game_obs_space["observation"]
        n_actions = int(self.game.action_space(first).n)
        self.observation_space = gym.spaces.Dict({
            "observation": gym.spaces.Box(obs_space.low, obs_space.high, obs_space.shape, obs_space.dtype),
            "action_mask": gym.spaces.Box(0, 1, (n_actions,), np.int8)})
        self.action_space = gym.spaces.Discrete(n_actions)
        self._heuristic = HEURISTICS.get(game)
        self._perfect = PERFECT.get(game)
        self._seat = 0
        self._opponent: tuple[str, int] = ("random", -1)   # (kind, pool snapshot id or -1)
        self._opponent_tensors: dict[str, Any] | None = None
        self._forced_opponent: dict[str, Any] | None = None
        self._deals: list[dict[str, Any]] = []
        self._finished = False
        self._obs: dict[str, np.ndarray] | None = None
        self._return = 0.0
        self._fixed_opponent: Callable[[dict[str, np.ndarray]], int] | None = None

    # ------------------------------------------------------------------ helpers
    @property
    def learner(self) -> str:
        return self.game.possible_agents[self._seat]

    def _observe(self, agent: str) -> dict[str, np.ndarray]:
        obs = self.game.observe(agent)
        return {"observation": np.asarray(obs["observation"], dtype=self.observation_space["observation"].dtype),
                "action_mask": np.asarray(obs["action_mask"], dtype=np.int8)}

    def _over(self) -> bool:
        return all(self.game.terminations.get(a, True) or self.game.truncations.get(a, False)
                   for a in self.game.possible_agents)

    def set_opponent(self, policy: Callable[[dict[str, np.ndarray]], int] | None) -> None:
        """Play every game from now on against ``policy`` (one observation, from its own seat, -> an action);
        None returns to the configured opponent. ``rlkit eval RUN --opponent RUN2`` pits two runs this way."""
        self._fixed_opponent = policy

    def _draw_opponent(self) -> tuple[str, int]:
        """This game's opponent: (kind, snapshot id). The draws use a fixed amount of ``np_random`` whatever the
        pool holds (a uniform for the snapshot), so a replayed episode stays in step with its RNG."""
        if self._fixed_opponent is not None:
            return ("fixed", -1)
        if self.opponent_kind != "selfplay":
            return (self.opponent_kind, -1)
        kinds = [k for k in ("pool", "random", "heuristic", "perfect") if self.opponent_mix.get(k, 0) > 0]
        weights = np.array([self.opponent_mix[k] for k in kinds], dtype=np.float64)
        kind = kinds[int(self.np_random.choice(len(kinds), p=weights / weights.sum()))]
        u = float(self.np_random.random())  # drawn for every game, used by pool games
        if kind == "pool":
            if self.pool is None or len(self.pool) == 0:
                return ("random", -1)  # nothing to play yet
            snapshot_id, self._opponent_tensors = self.pool.draw(u)
            return ("pool", snapshot_id)
        return (kind, -1)

    def _opponent_record(self) -> dict[str, Any]:
        kind, snapshot_id = self._opponent
        record: dict[str, Any] = {"kind": kind, "id": int(snapshot_id)}
        if kind == "pool":
            record["tensors"] = dict(self._opponent_tensors)
        return record

    def opponent_state(self) -> dict[str, Any]:
        """The opponents of the current episode's deals (one, unless games were dealt again because they ended
        before the learner's first move), for a checkpoint; a pool snapshot's tensors included, since the pool may
        drop it before the game ends."""
        return {"deals": list(self._deals)}

    def force_next_opponent(self, state: dict[str, Any] | None) -> None:
        """The next reset's deals play ``state``'s opponents, in order (the draws still happen): how an exact
        resume's env replay meets the checkpointed game's opponents although the pool has changed since then."""
        if state is not None:
            deals = state.get("deals") if isinstance(state, dict) else None
            allowed = ({"random", "pool"} | ({"heuristic"} if self._heuristic is not None else set())
                       | ({"perfect"} if self._perfect is not None else set()))
            if not isinstance(deals, list) or not deals or any(
                    not isinstance(d, dict) or d.get("kind") not in allowed
                    or isinstance(d.get("id"), bool) or not isinstance(d.get("id"), int)
                    or (d["kind"] == "pool" and not isinstance(d.get("tensors"), dict)) for d in deals):
                raise ValueError("a checkpointed board-game opponent is malformed (deals of random, heuristic or "
                                 "pool opponents expected)")
            state = {"deals": list(deals)}
        self._forced_opponent = state

    def _opponent_action(self, obs: dict[str, np.ndarray]) -> int:
        kind, snapshot_id = self._opponent
        if kind == "pool" and self.opponent_epsilon > 0 and self.np_random.random() < self.opponent_epsilon:
            kind = "random"
        if kind == "random":
            return random_legal(obs, self.np_random)
        if kind == "heuristic":
            return self._heuristic(obs, self.np_random)
        if kind == "perfect":
            return self._perfect(obs, self.np_random)
        if kind == "fixed":
            action = int(self._fixed_opponent(obs))
            if not 0 <= action < len(obs["action_mask"]) or not obs["action_mask"][action]:
                raise ValueError(f"{self.game_name}: the opponent policy chose action {action}, which the action mask "
                                 f"does not allow ({np.flatnonzero(obs['action_mask']).tolist()})")
            return action
        return int(self.pool.act(snapshot_id, self._opponent_tensors, obs))

    def _advance_opponent(self) -> float:
        """Play the opponent until it is the learner's turn or the game is over; the learner's reward meanwhile."""
        reward = 0.0
        while not self._over() and self.game.agent_selection != self.learner:
            agent = self.game.agent_selection
            action = self._opponent_action(self._observe(agent))
            self.game.step(action)
            reward += float(self.game.rewards.get(self.learner, 0.0))
        return reward

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._deals: list[dict[str, Any]] = []
        self._finished = False
        for _ in range(1000):  # a game that ends before the learner's first move (the opponent folds first in
            # poker) holds no decision for the learner, and gymnasium has no terminal reset: deal again
            self.game.reset(seed=int(self.np_random.integers(2**31 - 1)))
            self._seat = int(self.np_random.integers(2)) if self.learner_seat is None else self.learner_seat
            self._opponent = self._draw_opponent()
            if self._forced_opponent is not None and self._forced_opponent["deals"]:
                forced = self._forced_opponent["deals"].pop(0)
                self._opponent = (forced["kind"], int(forced["id"]))
                self._opponent_tensors = forced.get("tensors")
            self._deals.append(self._opponent_record())
            self._return = self._advance_opponent()  # the opponent opens when the learner has the second seat
            if not self._over():
                break
        else:
            raise RuntimeError(f"{self.game_name}: 1,000 games in a row ended before the learner's first move")
        self._forced_opponent = None
        self._obs = self._observe(self.learner)
        return self._obs, {"seat": self._seat, "opponent": self._opponent[0]}

    def step(self, action):
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        if self._finished or self._over():
            raise RuntimeError("the game is over: call reset()")
        mask = self._obs["action_mask"]
        try:
            index = int(action)
            valid = float(action) == index and 0 <= index < len(mask)
        except (TypeError, ValueError, OverflowError):
            valid = False
        if not valid:
            raise ValueError(f"{self.game_name}: action {action!r} is not one of the {len(mask)} actions")
        if not mask[index] and self.illegal_action == "lose":  # PettingZoo's TerminateIllegalWrapper rule
            penalty = WORST_REWARD[self.game_name]
            self._return, self._finished = self._return + penalty, True
            return ({k: v.copy() for k, v in self._obs.items()}, penalty, True, False,
                    {"outcome": -1, "illegal_action": True})
        if not mask[index]:
            raise ValueError(f"{self.game_name}: action {index} is not allowed here (the action mask allows "
                             f"{np.flatnonzero(mask).tolist()}); mask your policy's choices with obs['action_mask']")
        self.game.step(index)
        reward = float(self.game.rewards.get(self.learner, 0.0))
        reward += self._advance_opponent()
        self._obs = self._observe(self.learner)
        self._return += reward
        info: dict[str, Any] = {}
        terminated = self._over()
        if terminated:
            info["outcome"] = int(np.sign(self._return))
        return self._obs, reward, terminated, False, info

    def render(self) -> str | np.ndarray | None:
        """The board from the learner's side: text (``ansi``: X the learner, O the opponent) or an image
        (``rgb_array``: 32-pixel cells, red the learner, yellow the opponent; a card game's observation as grey
        cells), so ``rlkit eval --video`` records games."""
        if self.render_mode is None or self._obs is None:
            return None
        planes = np.asarray(self._obs["observation"])
        board = planes.ndim == 3 and planes.shape[-1] == 2
        if self.render_mode == "rgb_array":
            if not board:  # one row of grey cells, one per observation entry
                row = (np.clip(planes.reshape(1, -1), 0, 1) * 255).astype(np.uint8)
                return np.repeat(np.repeat(np.stack([row] * 3, axis=-1), 32, axis=0), 32, axis=1)
            image = np.full((*planes.shape[:2], 3), 235, dtype=np.uint8)
            image[planes[:, :, 0].astype(bool)] = (220, 40, 40)
            image[planes[:, :, 1].astype(bool)] = (240, 200, 40)
            return np.repeat(np.repeat(image, 32, axis=0), 32, axis=1)
        if not board:  # a card game: its observation vector
            return " ".join(f"{x:g}" for x in planes.ravel())
        return "\n".join("".join("X" if me else "O" if them else "." for me, them in zip(row[:, 0], row[:, 1]))
                         for row in planes)

    def symmetries(self) -> list | None:
        """The board's symmetry group for ``train.replay.symmetries`` (:mod:`rlkit.experience.symmetries`),
        identity first: connect four's left-right mirror (column c <-> 6 - c; gravity and the rules do not care),
        tic-tac-toe's 8 rotations and reflections of the square (D4; action = square = 3 * row + col); None for
        Leduc hold'em (its cards have no such symmetry)."""
        from rlkit.experience.symmetries import Symmetry, grid_symmetry, inverse

        planes = self.observation_space["observation"].shape
        if self.game_name == "connect_four":
            h, w, c = planes
            maps = {"identity": lambda r, col: (r, col), "mirror": lambda r, col: (r, w - 1 - col)}
            actions = {"identity": np.arange(w), "mirror": np.arange(w)[::-1].copy()}
            out = []
            for name, cell_of in maps.items():
                index, action = grid_symmetry(h, w, c, cell_of, None, w, action_map=actions[name])
                out.append(Symmetry({"observation": index, "action_mask": inverse(action)}, action, name))
            return out
        if self.game_name == "tictactoe":
            h, w, c = planes
            n = h  # 3
            maps = {"identity": lambda r, col: (r, col), "rotate90": lambda r, col: (col, n - 1 - r),
                    "rotate180": lambda r, col: (n - 1 - r, n - 1 - col), "rotate270": lambda r, col: (n - 1 - col, r),
                    "flip_rows": lambda r, col: (n - 1 - r, col), "flip_cols": lambda r, col: (r, n - 1 - col),
                    "transpose": lambda r, col: (col, r), "antitranspose": lambda r, col: (n - 1 - col, n - 1 - r)}
            cells = {(r, col): 3 * r + col for r in range(h) for col in range(w)}
            out = []
            for name, cell_of in maps.items():
                index, action = grid_symmetry(h, w, c, cell_of, cells, h * w)
                out.append(Symmetry({"observation": index, "action_mask": inverse(action)}, action, name))
            return out
        return None

    def action_masks(self) -> np.ndarray:
        """The legal actions now (sb3-contrib's MaskablePPO reads this method)."""
        return self._obs["action_mask"].astype(bool)


def make_board_game(**kwargs: Any) -> TwoPlayerSeatEnv:
    return TwoPlayerSeatEnv(**kwargs)
