"""Pseudo-labelling action-free data: an inverse-dynamics model trained on the labelled episodes of a dataset
labels the episodes that have no actions, and the union becomes a dataset BC or the Decision Transformer trains on.

Papers:
  - Torabi, Warnell, Stone (2018), "Behavioral Cloning from Observation" (BCO): an inverse-dynamics model
    a = g(s_t, s_t+1) learnt where actions are known infers a demonstrator's actions from its states alone.
  - Baker et al. (2022), "Video PreTraining (VPT)": an inverse-dynamics model trained on a small labelled set
    labels a large unlabelled corpus, then behaviour cloning on the pseudo-labels.
  - Zheng et al. (2023), "Semi-Supervised Offline Reinforcement Learning with Action-Free Trajectories"
    (SS-ORL): this exact setting on D4RL (a fraction of the trajectories labelled; label the rest; train an
    offline learner, DT among them, on the union).
  - Lee (2013), "Pseudo-Label"; Sohn et al. (2020), "FixMatch": keep a class label only where the model's
    confidence max_a p(a) reaches a threshold tau (FixMatch: 1[max q >= tau], tau = 0.95).
  - Lakshminarayanan, Pritzel, Blundell (2017), "Deep Ensembles": disagreement between independently trained
    members as the uncertainty of a regression.

The inverse model g_theta, K members (an ensemble; K = 1 by default):
    input       [z_t, z_t+1, z_t+1 - z_t], z = (s - mean) / std over the labelled states     vector observations
                [s_t, s_t+1] stacked on channels, / 255, a small CNN                           uint8 C x H x W images
    Discrete    p_k(a | s_t, s_t+1) = softmax(g_k(s_t, s_t+1))        L = -log p_k(a_t | s_t, s_t+1)
                p = 1/K sum_k p_k;  label a^ = argmax_a p(a);  confidence c = max_a p(a);  keep iff c >= tau
    Box         a~ = (a - c) / h, c = (high + low) / 2, h = (high - low) / 2 (raw where unbounded)
                L = 1/A sum_j (g_kj(s_t, s_t+1) - a~_j)^2
                label a^ = clip(c + h * 1/K sum_k g_k, low, high)
                disagreement d = 1/A sum_j std_k g_kj  (normalised units);  keep iff d <= tau (no tau: keep all)
Each member trains on its own minibatches from its own initialisation (Adam 1e-3, batch 256, 256x256 MLP) on
the labelled episodes less a held-out tenth of them; it keeps the weights of its lowest held-out loss (early
stopping), and the held-out accuracy (Discrete) or MSE in normalised units (Box) of the kept weights is recorded
(so slightly optimistic: the same episodes chose the weights).

Action-free data (what this module reads): a Minari dataset cannot hold NaN actions (rlkit's checks refuse them),
so an episode without real actions stores *placeholder* actions (any values in the action space:
:func:`action_free_episode` writes zeros, or the Discrete space's first action) and the dataset's metadata names
it: ``"rlkit": {"action_free": true}`` (every episode) or ``"rlkit": {"action_free_episodes": [i, ...]}``.
For experiments, ``labelled_fraction`` hides the actions of all but a seeded share of the episodes of a fully
labelled dataset (:func:`labelled_split`). Do not train an agent on placeholder actions: label them first.

What is written (:func:`pseudo_label`): the labelled episodes unchanged, then each action-free episode with
its pseudo-labels; a step whose label is not kept is dropped and its episode is cut there into runs of kept
steps (each run an episode of its own, truncated at a cut), so every step of the new dataset has an action
an agent may learn from, and BC and the DT read it unchanged. Its metadata (``"rlkit"`` -> ``"pseudo_label"``)
records which episodes (and which steps of which source episodes) are pseudo-labelled, the inverse model's
held-out accuracy or MSE, and the settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlkit.contract.networks import is_image_space, mlp
from rlkit.errors import ConfigError, DatasetError
from rlkit.experience.datasets import (Episode, LoadedDataset, action_free_mask, check_dataset_id, dataset_path,
                                       episode_stats, load_dataset, write_dataset)

__all__ = ["action_free_mask", "action_free_episode", "labelled_split", "labelled_count", "check_fraction",
           "labelled_mask", "discrete_labels",
           "box_labels", "confident", "kept_runs", "cut_episode", "InverseModel", "train_inverse_model",
           "pseudo_label", "labelled_subset"]

DEFAULT_DISCRETE_THRESHOLD = 0.95
"""FixMatch's tau: a Discrete pseudo-label is kept when the model gives it at least this probability."""
HELD_OUT = 0.1
BATCH = 256
HIDDEN = (256, 256)
LR = 1e-3


# --------------------------------------------------------------------------------------
# Action-free episodes and the labelled split
# --------------------------------------------------------------------------------------


def action_free_episode(episode: Episode, action_space: gym.Space) -> Episode:
    """``episode`` with placeholder actions (zeros clipped into a Box, the first action of a Discrete space): what
    an action-free episode stores, its metadata saying so."""
    T = len(episode)
    if isinstance(action_space, gym.spaces.Discrete):
        actions = np.full(T, action_space.start, np.int64)
    elif isinstance(action_space, gym.spaces.Box):
        zero = np.clip(np.zeros(action_space.shape), action_space.low, action_space.high).astype(action_space.dtype)
        actions = np.broadcast_to(zero, (T, *action_space.shape)).copy()
    else:
        raise DatasetError(f"pseudo-labelling handles Discrete or Box actions, not {action_space}")
    return Episode(episode.observations, actions, episode.rewards, episode.terminations, episode.truncations,
                   episode.infos, episode.reset_infos)


def labelled_count(n: int, fraction: float) -> int:
    """How many of ``n`` episodes keep their actions at ``fraction``: round(fraction * n), at least 1."""
    return min(n, max(1, int(math.floor(fraction * n + 0.5))))


def check_fraction(fraction: float) -> None:
    """A one-line ConfigError unless 0 < ``fraction`` <= 1."""
    if not 0.0 < fraction <= 1.0:  # also nan
        raise ConfigError(f"--labelled-fraction must lie in (0, 1] (the share of episodes that keep their actions), "
                          f"got {fraction}")


def labelled_split(n: int, fraction: float, seed: int) -> np.ndarray:
    """``[n]`` bool, exactly :func:`labelled_count` (n, fraction) True, drawn uniformly without replacement by
    ``numpy.random.default_rng(seed)``: the same seed gives the same split."""
    check_fraction(fraction)
    mask = np.zeros(n, bool)
    mask[np.random.default_rng(seed).permutation(n)[:labelled_count(n, fraction)]] = True
    return mask


# --------------------------------------------------------------------------------------
# Labels and confidence filtering (pure)
# --------------------------------------------------------------------------------------


def discrete_labels(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``[K, N, n]`` of K members (or ``[N, n]``) -> (labels ``[N]`` as indices 0..n-1, confidence ``[N]``):
    the argmax and the max of the members' mean softmax, p = 1/K sum_k softmax(logits_k)."""
    logits = np.asarray(logits, np.float64)
    logits = logits[None] if logits.ndim == 2 else logits
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs = (shifted / shifted.sum(axis=-1, keepdims=True)).mean(axis=0)               # [N, n]
    return probs.argmax(axis=-1), probs.max(axis=-1)


def box_labels(predictions: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised predictions ``[K, N, A]`` (or ``[N, A]``) -> (actions ``[N, A]`` = clip(c + h * mean_k, low, high),
    disagreement ``[N]`` = mean over dimensions of the members' std, in normalised units; 0 for one member)."""
    predictions = np.asarray(predictions, np.float64)
    predictions = predictions[None] if predictions.ndim == 2 else predictions
    center, half = _box_scale(np.asarray(low, np.float64).reshape(-1), np.asarray(high, np.float64).reshape(-1))
    actions = np.clip(center + half * predictions.mean(axis=0), low.reshape(-1), high.reshape(-1))
    return actions, predictions.std(axis=0).mean(axis=-1)


def confident(score: np.ndarray, threshold: float | None, higher_is_better: bool = True) -> np.ndarray:
    """Which labels to keep: ``score >= threshold`` (a confidence: Discrete) or ``score <= threshold`` (a
    disagreement: Box, ``higher_is_better=False``); every one without a threshold."""
    score = np.asarray(score)
    if threshold is None:
        return np.ones(score.shape, bool)
    return score >= threshold if higher_is_better else score <= threshold


def kept_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The maximal runs ``[start, stop)`` of consecutive True in a 1-D mask."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def cut_episode(episode: Episode, actions: np.ndarray, keep: np.ndarray) -> list[tuple[int, int, Episode]]:
    """``episode`` with ``actions`` ``[T, ...]``, cut into its runs of kept steps: ``(start, stop, piece)`` per run.
    A piece ends as the episode did where it reaches the episode's end; cut short, it is truncated."""
    T = len(episode)
    pieces = []
    for start, stop in kept_runs(keep):
        term, trunc = np.zeros(stop - start, bool), np.zeros(stop - start, bool)
        if stop == T:
            term[-1], trunc[-1] = bool(episode.terminations[-1]), bool(episode.truncations[-1])
        else:
            trunc[-1] = True
        infos = {k: np.asarray(v)[start:stop] for k, v in (episode.infos or {}).items()}
        reset_infos = dict(episode.reset_infos or {}) if start == 0 else {}
        obs = _slice_obs(episode.observations, start, stop + 1)
        pieces.append((start, stop, Episode(obs, actions[start:stop], np.asarray(episode.rewards)[start:stop], term,
                                            trunc, infos, reset_infos)))
    return pieces


def _slice_obs(obs: Any, start: int, stop: int) -> Any:
    return {k: v[start:stop] for k, v in obs.items()} if isinstance(obs, dict) else obs[start:stop]


def _box_scale(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(c, h) of the module docstring's a~ = (a - c) / h; (0, 1) where a Box is unbounded, h = 1 where fixed."""
    bounded = bool(np.all(np.isfinite(low)) and np.all(np.isfinite(high)))
    center = (high + low) / 2 if bounded else np.zeros_like(low)
    half = (high - low) / 2 if bounded else np.ones_like(low)
    return center, np.where(half == 0, 1.0, half)


# --------------------------------------------------------------------------------------
# The inverse-dynamics model
# --------------------------------------------------------------------------------------


def _flat_obs(obs: Any) -> np.ndarray:
    """Observations as ``[N, ...]``: a Dict's vector keys flattened and concatenated in sorted key order."""
    if isinstance(obs, dict):
        return np.concatenate([np.asarray(obs[k]).reshape(len(obs[k]), -1) for k in sorted(obs)], axis=1)
    return np.asarray(obs)


class InverseModel(nn.Module):
    """g: (s_t ``[B, ...]``, s_t+1 ``[B, ...]``) -> ``[B, out]`` (logits, or normalised Box actions); see the module
    docstring for the inputs. Vector observations are standardised with the labelled states' statistics."""

    def __init__(self, obs_shape: Sequence[int], image: bool, out_dim: int, mean: np.ndarray | None = None,
                 std: np.ndarray | None = None, hidden: Sequence[int] = HIDDEN) -> None:
        super().__init__()
        self.image = image
        if image:
            channels = int(obs_shape[0])
            self.body = nn.Sequential(                                                     # [B, 2C, H, W]
                nn.Conv2d(2 * channels, 32, 3, stride=2, padding=1), nn.ReLU(),          # [B, 32, H/2, W/2]
                nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),                    # [B, 64, H/4, W/4]
                nn.AdaptiveAvgPool2d(4), nn.Flatten(),                                   # [B, 1024]
            )
            self.head = mlp(64 * 16, hidden[-1:], out_dim)
        else:
            dim = int(np.prod(obs_shape)) if len(obs_shape) else 1
            self.register_buffer("mean", torch.as_tensor(np.zeros(dim) if mean is None else mean, dtype=torch.float32))
            self.register_buffer("std", torch.as_tensor(np.ones(dim) if std is None else std, dtype=torch.float32))
            self.head = mlp(3 * dim, hidden, out_dim)                                    # [B, 3D] -> [B, out]

    def forward(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        if self.image:
            return self.head(self.body(torch.cat([obs, next_obs], dim=1).float() / 255.0))
        z = (obs.reshape(len(obs), -1).float() - self.mean) / self.std                   # [B, D]
        z_next = (next_obs.reshape(len(next_obs), -1).float() - self.mean) / self.std    # [B, D]
        return self.head(torch.cat([z, z_next, z_next - z], dim=-1))


@dataclass(frozen=True)
class Transitions:
    """Aligned one-step transitions as numpy: ``obs[i] -> next_obs[i]`` by ``actions[i]`` (flattened Dicts)."""

    obs: np.ndarray
    next_obs: np.ndarray
    actions: np.ndarray

    @staticmethod
    def of(episodes: Sequence[Episode]) -> "Transitions":
        obs = [_flat_obs(ep.observations) for ep in episodes]
        return Transitions(np.concatenate([o[:-1] for o in obs]), np.concatenate([o[1:] for o in obs]),
                           np.concatenate([np.asarray(ep.actions) for ep in episodes]))

    def take(self, index: np.ndarray) -> "Transitions":
        return Transitions(self.obs[index], self.next_obs[index], self.actions[index])

    def __len__(self) -> int:
        return len(self.actions)


def _targets(actions: np.ndarray, action_space: gym.Space) -> torch.Tensor:
    """The training targets: class indices (Discrete) or a~ (Box)."""
    if isinstance(action_space, gym.spaces.Discrete):
        return torch.as_tensor(actions.reshape(-1) - action_space.start, dtype=torch.long)
    center, half = _box_scale(action_space.low.reshape(-1).astype(np.float64),
                              action_space.high.reshape(-1).astype(np.float64))
    return torch.as_tensor((actions.reshape(len(actions), -1) - center) / half, dtype=torch.float32)


@torch.no_grad()
def predict(models: Sequence[InverseModel], obs: np.ndarray, next_obs: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Every member's outputs ``[K, N, out]`` for transitions ``obs -> next_obs`` (in chunks)."""
    outs = []
    for model in models:
        model.eval()
        parts = [model(torch.as_tensor(obs[i:i + chunk]), torch.as_tensor(next_obs[i:i + chunk])).numpy()
                 for i in range(0, len(obs), chunk)]
        outs.append(np.concatenate(parts) if parts else np.zeros((0, model.head[-1].out_features)))
    return np.stack(outs)


def train_inverse_model(train: Transitions, action_space: gym.Space, obs_space: gym.Space, steps: int, seed: int,
                        members: int = 1, held: Transitions | None = None,
                        progress: Callable[[int], None] | None = None) -> list[InverseModel]:
    """K members trained up to ``steps`` Adam steps each on minibatches of ``train`` (module docstring's losses).
    With ``held`` (transitions not trained on), each member's loss on it is measured every ``steps // 20`` steps
    and the member keeps its weights of the lowest one (early stopping: a tenth of the labelled episodes is a
    few hundred transitions, which a 256x256 MLP overfits within a few thousand steps)."""
    image = isinstance(obs_space, gym.spaces.Box) and is_image_space(tuple(obs_space.shape), obs_space.dtype)
    discrete = isinstance(action_space, gym.spaces.Discrete)
    out_dim = int(action_space.n) if discrete else int(np.prod(action_space.shape))
    mean = std = None
    if not image:
        flat = train.obs.reshape(len(train), -1).astype(np.float64)
        mean, std = flat.mean(axis=0), flat.std(axis=0) + 1e-6
    targets = _targets(train.actions, action_space)
    obs, next_obs = torch.as_tensor(train.obs), torch.as_tensor(train.next_obs)
    loss_fn = nn.functional.cross_entropy if discrete else nn.functional.mse_loss
    check_every = max(1, steps // 20)
    generator = torch.Generator().manual_seed(seed)
    models = []
    for k in range(members):
        torch.manual_seed(seed * 1000 + k)
        model = InverseModel(train.obs.shape[1:], image, out_dim, mean, std)
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        best, best_state = math.inf, None
        for step in range(1, steps + 1):
            idx = torch.randint(len(train), (min(BATCH, len(train)),), generator=generator)
            loss = loss_fn(model(obs[idx], next_obs[idx]), targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if held is not None and len(held) and (step % check_every == 0 or step == steps):
                held_loss = _held_loss(model, held, action_space, loss_fn)
                if held_loss < best:
                    best, best_state = held_loss, {n: t.clone() for n, t in model.state_dict().items()}
                model.train()
            if progress is not None:
                progress(1)
        if best_state is not None:
            model.load_state_dict(best_state)
        models.append(model.eval())
    return models


@torch.no_grad()
def _held_loss(model: InverseModel, held: Transitions, action_space: gym.Space, loss_fn: Callable) -> float:
    output = torch.as_tensor(predict([model], held.obs, held.next_obs)[0])
    return float(loss_fn(output, _targets(held.actions, action_space)))


def _held_out_metrics(models: Sequence[InverseModel], held: Transitions, action_space: gym.Space,
                      threshold: float | None) -> dict[str, Any]:
    """Accuracy (Discrete; also among the kept labels) or MSE in normalised units (Box; also among the kept)."""
    if len(held) == 0:
        return {"held_out_steps": 0}
    out = predict(models, held.obs, held.next_obs)
    target = _targets(held.actions, action_space).numpy()
    if isinstance(action_space, gym.spaces.Discrete):
        labels, confidence = discrete_labels(out)
        keep = confident(confidence, threshold)
        right = labels == target
        return {"held_out_steps": len(held), "held_out_accuracy": float(right.mean()),
                "held_out_kept_fraction": float(keep.mean()),
                "held_out_accuracy_kept": float(right[keep].mean()) if keep.any() else None}
    _, disagreement = box_labels(out, action_space.low, action_space.high)
    keep = confident(disagreement, threshold, higher_is_better=False)
    error = np.square(np.clip(out.mean(axis=0), *_unit_bounds(action_space)) - target).mean(axis=-1)  # [N]
    return {"held_out_steps": len(held), "held_out_mse": float(error.mean()),
            "held_out_target_variance": float(target.var(axis=0).mean()),
            "held_out_kept_fraction": float(keep.mean()),
            "held_out_mse_kept": float(error[keep].mean()) if keep.any() else None}


def _unit_bounds(action_space: gym.spaces.Box) -> tuple[np.ndarray, np.ndarray]:
    """The Box bounds in normalised units (-1, 1 where bounded, unbounded otherwise)."""
    low, high = action_space.low.reshape(-1).astype(np.float64), action_space.high.reshape(-1).astype(np.float64)
    center, half = _box_scale(low, high)
    return (low - center) / half, (high - center) / half


# --------------------------------------------------------------------------------------
# The whole step: label a dataset's action-free episodes, write the union
# --------------------------------------------------------------------------------------


def _check_out(out: str, overwrite: bool) -> None:
    check_dataset_id(out)
    if dataset_path(out).exists() and not overwrite:
        raise DatasetError(f"dataset '{out}' already exists ({dataset_path(out)}); pick another --out (e.g. bump -vN)")


def _check_action_space(data: LoadedDataset) -> None:
    if not isinstance(data.action_space, (gym.spaces.Discrete, gym.spaces.Box)):
        raise DatasetError(f"dataset '{data.dataset_id}': pseudo-labelling handles Discrete or Box actions, its action "
                           f"space is {data.action_space}")
    space = data.observation_space
    if isinstance(space, gym.spaces.Dict):
        for key, sub in space.spaces.items():
            if not isinstance(sub, gym.spaces.Box) or is_image_space(tuple(sub.shape), sub.dtype):
                raise DatasetError(f"dataset '{data.dataset_id}': Dict observation key '{key}' is {sub}; the inverse "
                                   "model reads Dict observations of vector Boxes only")
    elif not isinstance(space, gym.spaces.Box):
        raise DatasetError(f"dataset '{data.dataset_id}': the inverse model reads Box (vector or uint8 image) or Dict "
                           f"observations, not {space}")


def labelled_mask(data: LoadedDataset, labelled_fraction: float | None, seed: int) -> np.ndarray:
    """``[episodes]`` bool: the episodes whose actions are used. Those the metadata marks action-free never are;
    with ``labelled_fraction``, :func:`labelled_split` (seeded) of the others keeps its actions."""
    labelled = ~action_free_mask(data)
    if labelled_fraction is not None:
        candidates = np.flatnonzero(labelled)
        if len(candidates) == 0:
            raise DatasetError(f"dataset '{data.dataset_id}' has no labelled episodes (its metadata marks every one "
                               "action-free): pseudo-labelling needs some episodes with real actions")
        labelled[candidates[~labelled_split(len(candidates), labelled_fraction, seed)]] = False
    if not labelled.any():
        raise DatasetError(f"dataset '{data.dataset_id}' has no labelled episodes (its metadata marks every one "
                           "action-free): pseudo-labelling needs some episodes with real actions")
    return labelled


def _held_out_split(episodes: list[Episode], rng: np.random.Generator) -> tuple[Transitions, Transitions]:
    """(train, held out): a tenth of the labelled episodes held out (at least one) when there are two or more,
    else a tenth of the one episode's steps."""
    if len(episodes) >= 2:
        held = set(rng.permutation(len(episodes))[:max(1, round(HELD_OUT * len(episodes)))].tolist())
        return (Transitions.of([e for i, e in enumerate(episodes) if i not in held]),
                Transitions.of([e for i, e in enumerate(episodes) if i in held]))
    every = Transitions.of(episodes)
    order = rng.permutation(len(every))
    cut = int(round(HELD_OUT * len(every))) if len(every) >= 2 else 0
    return every.take(np.sort(order[cut:])), every.take(np.sort(order[:cut]))


def _labels(models: Sequence[InverseModel], data: Transitions, action_space: gym.Space, threshold: float | None
            ) -> tuple[np.ndarray, np.ndarray]:
    """(actions in the space's dtype, keep mask) for transitions."""
    out = predict(models, data.obs, data.next_obs)
    if isinstance(action_space, gym.spaces.Discrete):
        labels, confidence = discrete_labels(out)
        return (labels + action_space.start).astype(np.int64), confident(confidence, threshold)
    actions, disagreement = box_labels(out, action_space.low, action_space.high)
    actions = actions.reshape(len(actions), *action_space.shape).astype(action_space.dtype)
    return actions, confident(disagreement, threshold, higher_is_better=False)


def _label_error(labels: np.ndarray, truth: np.ndarray, action_space: gym.Space) -> dict[str, float]:
    """How far the pseudo-labels of hidden (really labelled) episodes are from their true actions."""
    if isinstance(action_space, gym.spaces.Discrete):
        return {"hidden_actions_accuracy": float((labels.reshape(-1) == truth.reshape(-1)).mean())}
    a, b = _targets(labels, action_space).numpy(), _targets(truth, action_space).numpy()
    return {"hidden_actions_mse": float(np.square(a - b).mean())}


def _check_settings(threshold: float | None, steps: int, ensemble: int | None, discrete: bool) -> None:
    if steps < 1:
        raise ConfigError(f"--steps must be >= 1 (gradient steps of the inverse model), got {steps}")
    if ensemble is not None and ensemble < 1:
        raise ConfigError(f"--ensemble must be >= 1, got {ensemble}")
    if threshold is not None and discrete and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold for Discrete actions is a softmax confidence in [0, 1], got {threshold}")
    if threshold is not None and not discrete and not threshold > 0.0:
        raise ConfigError(f"--threshold for Box actions is an ensemble disagreement (std in normalised action "
                          f"units) > 0, got {threshold}")
    if threshold is not None and not discrete and ensemble == 1:
        raise ConfigError("--threshold for Box actions compares ensemble members: use --ensemble >= 2 (default 5)")


def pseudo_label(source: str, out: str, *, labelled_fraction: float | None = None, threshold: float | None = None,
                 steps: int = 2000, seed: int = 0, ensemble: int | None = None, action_free: str | None = None,
                 overwrite: bool = False, show_progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """Label the action-free episodes of ``source`` (and of the dataset ``action_free``, every episode of which
    is taken as action-free) with an inverse model trained ``steps`` steps on its labelled episodes, and write
    the union as ``out``. ``threshold``: Discrete confidence (default 0.95), Box ensemble disagreement (default
    none: keep every label). ``ensemble``: members (default 5 for a Box threshold, else 1). Returns (the new
    dataset's directory, a summary: counts and the inverse model's held-out metrics)."""
    from tqdm import tqdm

    if labelled_fraction is not None:
        check_fraction(labelled_fraction)
    _check_out(out, overwrite)
    data = load_dataset(source)
    _check_action_space(data)
    discrete = isinstance(data.action_space, gym.spaces.Discrete)
    _check_settings(threshold, steps, ensemble, discrete)
    extra = load_dataset(action_free) if action_free is not None else None
    if extra is not None and (extra.observation_space != data.observation_space
                              or extra.action_space != data.action_space):
        raise DatasetError(f"--action-free dataset '{extra.dataset_id}' has spaces {extra.observation_space} / "
                           f"{extra.action_space}, not the source's {data.observation_space} / {data.action_space}")
    labelled = labelled_mask(data, labelled_fraction, seed)
    hidden = ~labelled & ~action_free_mask(data)  # real actions hidden by --labelled-fraction: their error is known
    threshold = DEFAULT_DISCRETE_THRESHOLD if threshold is None and discrete else threshold
    members = ensemble or (5 if threshold is not None and not discrete else 1)

    # inverse model
    rng = np.random.default_rng(seed)
    train, held = _held_out_split([ep for ep, keep in zip(data.episodes, labelled) if keep], rng)
    with tqdm(total=steps * members, desc="inverse model", unit="step", disable=not show_progress) as bar:
        models = train_inverse_model(train, data.action_space, data.observation_space, steps, seed, members, held,
                                     bar.update)
    metrics = _held_out_metrics(models, held, data.action_space, threshold)

    # labels
    unlabelled = [(0, i, ep) for i, ep in enumerate(data.episodes) if not labelled[i]]
    unlabelled += [(1, i, ep) for i, ep in enumerate(extra.episodes)] if extra is not None else []
    rows: list[list[int]] = [[0, i, 0, len(ep), 0] for i, ep in enumerate(data.episodes) if labelled[i]]
    episodes = [ep for i, ep in enumerate(data.episodes) if labelled[i]]
    counts = _label_episodes(models, unlabelled, hidden, data.action_space, threshold, rows, episodes, metrics,
                             show_progress)
    summary = {
        "source": data.dataset_id, "action_free_source": extra.dataset_id if extra is not None else None,
        "labelled_fraction": labelled_fraction, "seed": seed, "threshold": threshold, "steps": steps,
        "ensemble": members, "actions": "discrete" if discrete else "box",
        "labelled_episodes": int(labelled.sum()), "labelled_steps": int(sum(len(e) for e, k in
                                                                            zip(data.episodes, labelled) if k)),
        "action_free_episodes": len(unlabelled), **counts, "inverse_model": {"train_steps": len(train), **metrics},
    }
    record = {**summary, "episodes_columns": ["dataset", "episode", "start", "stop", "pseudo_labelled"],
              "episodes": rows, "pseudo_labelled_episodes": [j for j, row in enumerate(rows) if row[4]]}
    path = _write_derived(out, data, episodes, "pseudo_label", record, "rlkit pseudo-label",
                          f"'{data.dataset_id}' with its action-free episodes labelled by an inverse-dynamics model "
                          "(rlkit dataset pseudo-label)", overwrite)
    return path, {**summary, **episode_stats(episodes)}


def _label_episodes(models: Sequence[InverseModel], unlabelled: list[tuple[int, int, Episode]], hidden: np.ndarray,
                    action_space: gym.Space, threshold: float | None, rows: list[list[int]], episodes: list[Episode],
                    metrics: dict[str, Any], show_progress: bool) -> dict[str, int]:
    """Label each ``(dataset, index, episode)``, appending its runs of kept steps to ``episodes`` and their rows
    (dataset, episode, start, stop, 1) to ``rows``; the error on episodes whose actions were ``hidden`` goes into
    ``metrics``. Returns the kept and dropped step counts."""
    from tqdm import tqdm

    kept = dropped = 0
    truth, guessed = [], []
    for which, index, ep in tqdm(unlabelled, desc="labelling", unit="episode", disable=not show_progress):
        actions, keep = _labels(models, Transitions.of([ep]), action_space, threshold)
        if which == 0 and hidden[index]:
            truth.append(np.asarray(ep.actions))
            guessed.append(actions)
        for start, stop, piece in cut_episode(ep, actions, keep):
            rows.append([which, index, start, stop, 1])
            episodes.append(piece)
        kept, dropped = kept + int(keep.sum()), dropped + int((~keep).sum())
    if truth:
        metrics.update(_label_error(np.concatenate(guessed), np.concatenate(truth), action_space))
    return {"pseudo_labelled_steps": kept, "dropped_steps": dropped}


def _write_derived(out: str, data: LoadedDataset, episodes: list[Episode], key: str, record: dict[str, Any],
                   algorithm: str, description: str, overwrite: bool) -> Any:
    """Write ``episodes`` as ``out`` with the source's env, reference scores and rlkit metadata (less its
    checksums and action-free marks) and ``record`` under ``rlkit.<key>``."""
    meta = {k: v for k, v in _rlkit_meta(data).items() if k not in ("checksums", "fingerprint", "action_free",
                                                                     "action_free_episodes", "pseudo_label",
                                                                     "labelled_subset", "env_id")}
    env_kwargs = meta.pop("env_kwargs", None)
    return write_dataset(out, episodes, data.observation_space, data.action_space, env_id=data.env_id,
                         env_kwargs=env_kwargs, algorithm_name=algorithm, description=description,
                         metadata={**meta, key: record}, overwrite=overwrite, ref_scores=data.reference_scores)


def labelled_subset(source: str, out: str, labelled_fraction: float, seed: int, overwrite: bool = False
                    ) -> tuple[Any, dict[str, Any]]:
    """Write the episodes of ``source`` that keep their actions under :func:`labelled_mask` (the same split
    :func:`pseudo_label` uses for the same ``labelled_fraction`` and ``seed``) as ``out``: the baseline that
    learns from the labelled part alone."""
    check_fraction(labelled_fraction)
    _check_out(out, overwrite)
    data = load_dataset(source)
    labelled = labelled_mask(data, labelled_fraction, seed)
    episodes = [ep for ep, keep in zip(data.episodes, labelled) if keep]
    record = {"source": data.dataset_id, "labelled_fraction": labelled_fraction, "seed": seed,
              "episodes": np.flatnonzero(labelled).tolist()}
    path = _write_derived(out, data, episodes, "labelled_subset", record, "rlkit labelled subset",
                          f"the labelled {labelled_fraction:g} of '{data.dataset_id}' (seed {seed})", overwrite)
    return path, episode_stats(episodes)


def _rlkit_meta(data: LoadedDataset) -> dict[str, Any]:
    meta = data.metadata.get("rlkit")
    return dict(meta) if isinstance(meta, dict) else {}
