"""Linear probes of pretrained encoders: how much of CartPole's true state a frozen encoder's features hold
(issue 21, "must show"; the CLAPP paper's claim in shape: local learning well above a random encoder, close to
end-to-end CPC — Illing, Ventura, Bellec, Gerstner, NeurIPS 2021).

    nice -n 10 python scripts/linear_probe.py --out runs/linear-probe --seeds 0 1 2 --steps 300
    # --per-block: also probe each block of the encoder (where CLAPP's local losses keep the state, or lose it)

1. A pixel dataset with the true state per step: CartPole-v1 rendered (``render_mode="rgb_array"``), the band
   the cart and pole move in (rows 150-330 of 400) averaged to grey 5x5 blocks, the current and the previous
   frame stacked: uint8 observations ``[2, 36, 120]`` (two frames, so velocities are visible; 36 rows, the
   least the Nature CNN takes). Each step repeats its action for 4 env steps (Atari's frame skip: at this
   resolution one 20 ms step moves the cart by a tenth of a pixel, and no loss could see an action's effect),
   episodes end at 100 steps. The actions come from a
   balancing policy (push toward the pole's fall) with 0, 5, 10, 20 or 30% uniform random actions (per episode,
   in turn), so that the states spread; CartPole's 4-dim state of every observation is kept in the
   episode's infos (``state``, Minari's T + 1 layout). Written as the Minari dataset ``--dataset``.
2. For every method and seed, ``rlkit pretrain`` trains one encoder shape (``--encoder``, default the Nature
   CNN: three convolutions and a 512-unit layer, so CLAPP has four blocks to make local; it reads IMPALA and the
   ViT as one block) on the dataset's episodes with that auxiliary loss; the random encoder is the same network
   as initialised with the seed.
3. The probe: features of the frozen encoder for every observation, a ridge regression (features and targets
   standardised on the train split, the penalty picked on a validation tenth of the train episodes) from
   features to the 4 state dimensions, fitted on the train episodes and scored on held-out episodes (a quarter):
   R² per dimension and their mean.

Methods are the modules of ``rlkit.auxiliary.AUX_MODULES`` named in ``--methods`` (those not registered are
skipped and listed) plus ``random``. Runs that exist are read, not made again. Writes OUT/results.json and
prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STATE_NAMES = ("x", "x_dot", "theta", "theta_dot")
DEFAULT_ENCODER = {"kind": "nature"}
METHOD_WEIGHTS = {"inverse_dynamics": 1.0}  # the loss's weight when it is the only loss: 1 for all


# --------------------------------------------------------------------------------------
# 1. the dataset
# --------------------------------------------------------------------------------------


def grey_band(frame: np.ndarray) -> np.ndarray:
    """CartPole's 400x600 RGB render -> ``[36, 120]`` uint8: rows 150-330, grey, 5x5 block means."""
    band = frame[150:330].astype(np.float32).mean(axis=-1)
    return band.reshape(36, 5, 120, 5).mean(axis=(1, 3)).round().astype(np.uint8)


EPSILONS = (0.0, 0.05, 0.1, 0.2, 0.3)
"""Shares of uniform random actions, one per episode in turn: long balanced episodes and short wild ones."""


def balancing_action(state: np.ndarray, rng: np.random.Generator, epsilon: float) -> int:
    """Push toward the pole's fall (theta + 0.2 theta_dot; the cart drifts freely), else with probability
    ``epsilon`` a uniform random action."""
    if rng.random() < epsilon:
        return int(rng.integers(2))
    return int(state[2] + 0.2 * state[3] > 0)


def make_dataset(dataset_id: str, episodes: int, seed: int, repeat: int = 4, max_steps: int = 100) -> Path:
    """The pixel CartPole dataset (see the module docstring): each step repeats its action ``repeat`` env steps
    (Atari's frame skip), up to ``max_steps`` steps an episode; returns the dataset's directory."""
    import gymnasium as gym

    from rlkit.experience.datasets import Episode, write_dataset

    env = gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=max_steps * repeat)
    rng = np.random.default_rng(seed)
    out = []
    for e in range(episodes):
        state, _ = env.reset(seed=seed * 100_000 + e)
        epsilon = EPSILONS[e % len(EPSILONS)]
        frame = grey_band(env.render())
        frames, states, actions, rewards = [np.stack([frame, frame])], [state], [], []
        while True:
            action, reward = balancing_action(state, rng, epsilon), 0.0
            for _ in range(repeat):
                state, r, terminated, truncated, _ = env.step(action)
                reward += r
                if terminated or truncated:
                    break
            previous, frame = frame, grey_band(env.render())
            frames.append(np.stack([previous, frame]))
            states.append(state)
            actions.append(action)
            rewards.append(reward)
            if terminated or truncated:
                break
        t = len(actions)
        out.append(Episode(np.stack(frames), np.asarray(actions, np.int64), np.asarray(rewards, np.float32),
                           np.r_[np.zeros(t - 1, bool), terminated], np.r_[np.zeros(t - 1, bool), truncated and not terminated],
                           infos={"state": np.asarray(states, np.float32)}))
    env.close()
    space = gym.spaces.Box(0, 255, (2, 36, 120), np.uint8)
    return write_dataset(dataset_id, out, space, gym.spaces.Discrete(2), env_id=None,
                         description=f"CartPole-v1 rendered, action repeat {repeat}: 2 stacked grey 36x120 frames (this "
                                     "step's and the previous step's); infos['state'] = the true state",
                         metadata={"probe": "scripts/linear_probe.py", "episodes": episodes, "seed": seed,
                                   "action_repeat": repeat})


def load_probe_data(dataset_id: str):
    """(observations [N, ...] uint8, states [N, 4], episode index [N]) of every observation of the dataset."""
    from rlkit.experience.datasets import load_dataset

    data = load_dataset(dataset_id)
    obs, states, index = [], [], []
    for i, ep in enumerate(data.episodes):
        st = np.asarray(ep.infos["state"])  # [T] step infos (+ the reset's, kept apart when loaded)
        if len(st) + 1 == len(ep.observations) and "state" in ep.reset_infos:
            st = np.concatenate([np.asarray(ep.reset_infos["state"])[None], st])
        if len(st) != len(ep.observations):
            raise SystemExit(f"{dataset_id}: episode {i} keeps {len(st)} states for {len(ep.observations)} observations")
        obs.append(np.asarray(ep.observations))
        states.append(st)
        index.append(np.full(len(st), i))
    return np.concatenate(obs), np.concatenate(states).astype(np.float64), np.concatenate(index), data


# --------------------------------------------------------------------------------------
# 2. the encoders
# --------------------------------------------------------------------------------------


def sh(cmd: list[str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ})
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")
    return time.perf_counter() - start


def pretrain_run(method: str, seed: int, args, encoder: dict, out: Path) -> tuple[Path, float | None]:
    """``rlkit pretrain`` of ``method`` (an aux module) at ``seed``: (encoder file, wall seconds or None if read)."""
    import yaml

    run = out / "runs" / f"{method}-s{seed}"
    path = run / "encoder.safetensors"
    if path.exists():
        return path, None
    run.parent.mkdir(parents=True, exist_ok=True)
    aux = {"name": method, "weight": METHOD_WEIGHTS.get(method, 1.0), **json.loads(args.aux_kwargs).get(method, {})}
    config = {"dataset": args.dataset, "encoder": encoder, "aux": [aux], "steps": args.steps,
              "batch_size": args.batch_size, "lr": args.lr, "seed": seed, "device": "cpu", "checkpoint_every": 0,
              "log": {"progress": False, "tensorboard": False, "plot": False, "log_every": max(args.steps // 10, 1)}}
    cfg_path = out / "configs" / f"{method}-s{seed}.yaml"
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    seconds = sh([sys.executable, "-m", "rlkit.cli", "pretrain", str(cfg_path), "--run-dir", str(run)],
                 out / "runs" / f"{method}-s{seed}.log")
    return path, seconds


def features(encoder, obs: np.ndarray, batch: int = 256) -> np.ndarray:
    import torch

    encoder.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(obs), batch):
            out.append(encoder(torch.as_tensor(obs[i:i + batch])).double().numpy())
    return np.concatenate(out)


def block_features(encoder, obs: np.ndarray, batch: int = 256) -> list[np.ndarray]:
    """Every block's output (CLAPP's blocks, :func:`rlkit.auxiliary.clapp.encoder_blocks`), flattened: ``[N, D_l]``
    per block, the last one the encoder's features."""
    import torch

    from rlkit.auxiliary.clapp import encoder_blocks

    blocks = encoder_blocks(encoder)
    encoder.eval()
    out: list[list[np.ndarray]] = [[] for _ in blocks]
    with torch.no_grad():
        for i in range(0, len(obs), batch):
            x = torch.as_tensor(obs[i:i + batch])
            for b, block in enumerate(blocks):
                x = block(x)
                out[b].append(x.reshape(len(x), -1).double().numpy())
    return [np.concatenate(o) for o in out]


def effective_rank(feats: np.ndarray) -> float:
    """exp of the entropy of the normalised squared singular values of the centred features (Roy & Vetterli
    2007): 1 for features on a line, D for isotropic ones; a collapse check."""
    s = np.linalg.svd(feats - feats.mean(0), compute_uv=False) ** 2
    p = s[s > 0] / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def build_encoder(space, encoder: dict, seed: int, weights: Path | None):
    import torch

    from rlkit.contract.networks import EncoderConfig, make_encoder

    torch.manual_seed(seed)
    module = make_encoder(space, (), EncoderConfig(**encoder))
    if weights is not None:
        from safetensors.torch import load_file

        module.load_state_dict(load_file(str(weights)))
    return module


# --------------------------------------------------------------------------------------
# 3. the probe
# --------------------------------------------------------------------------------------


def ridge_path(x: np.ndarray, y: np.ndarray, alphas: list[float]) -> list[np.ndarray]:
    """argmin_W |xW - y|^2 + alpha |W|^2 for every alpha (x, y centred), from one thin SVD of x:
    W = V diag(s / (s^2 + alpha)) U^T y."""
    u, sv, vt = np.linalg.svd(x, full_matrices=False)
    uty = u.T @ y
    return [vt.T @ ((sv / (sv ** 2 + a))[:, None] * uty) for a in alphas]


def r2(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return 1.0 - ((y - pred) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


def probe(feats: np.ndarray, states: np.ndarray, episode: np.ndarray, test_fraction: float = 0.25) -> dict:
    """Ridge probe fitted on the first (1 - test_fraction) of the episodes, scored on the rest; the penalty is
    the one scoring best on the last tenth of the train episodes when fitted on the rest."""
    n_ep = int(episode.max()) + 1
    train_eps = int(round(n_ep * (1 - test_fraction)))
    test = episode >= train_eps
    val = (~test) & (episode >= int(round(train_eps * 0.9)))
    fit = (~test) & ~val

    def standardise(mask):
        mean, std = feats[mask].mean(0), feats[mask].std(0) + 1e-8
        ymean, ystd = states[mask].mean(0), states[mask].std(0) + 1e-8
        return (lambda f: (f - mean) / std), (lambda s: (s - ymean) / ystd)

    alphas = [10.0 ** k for k in range(-3, 6)]
    fx, fy = standardise(fit)
    scores = [r2(fy(states[val]), fx(feats[val]) @ w).mean()
              for w in ridge_path(fx(feats[fit]), fy(states[fit]), alphas)]
    alpha = alphas[int(np.argmax(scores))]
    train = ~test
    fx, fy = standardise(train)
    (w,) = ridge_path(fx(feats[train]), fy(states[train]), [alpha])
    per_dim = r2(fy(states[test]), fx(feats[test]) @ w)
    return {"r2": dict(zip(STATE_NAMES, map(float, per_dim))), "r2_mean": float(per_dim.mean()), "alpha": alpha,
            "train_rows": int(train.sum()), "test_rows": int(test.sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/linear-probe")
    parser.add_argument("--dataset", default="rlkit/probe-pixel-cartpole-v0")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--methods", nargs="+", default=["cpc", "clapp", "curl", "mean_teacher", "inverse_dynamics"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--encoder", default=json.dumps(DEFAULT_ENCODER), help="agent.encoder as JSON")
    parser.add_argument("--aux-kwargs", default="{}", help='per-method module settings as JSON, e.g. {"cpc": {"k": 3}}')
    parser.add_argument("--raw-pixels", action="store_true",
                        help="also probe the raw pixels, averaged over 2x2 blocks (a reference row; full size, the "
                             "ridge's SVD took over 10 minutes on 2 loaded cores)")
    parser.add_argument("--per-block", action="store_true",
                        help="also probe every block's output (flattened; CLAPP's blocks) and report its share of "
                             "dead units (never positive) and effective rank (on every 4th observation)")
    parser.add_argument("--blocks", type=int, nargs="*", default=None,
                        help="with --per-block: only these blocks (0 = the first; e.g. 1 2 3 leaves out conv1's "
                             "7,424 features, which overfit the ridge and take minutes)")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MINARI_DATASETS_PATH", str((out / "datasets").resolve()))
    import torch

    torch.set_num_threads(1)
    from rlkit.auxiliary import AUX_MODULES
    from rlkit.experience.datasets import dataset_path

    start = time.perf_counter()
    if not dataset_path(args.dataset).exists():
        make_dataset(args.dataset, args.episodes, seed=12345)
    data_seconds = time.perf_counter() - start
    obs, states, episode, data = load_probe_data(args.dataset)
    print(f"dataset {args.dataset}: {len(data.episodes)} episodes, {len(obs)} observations {obs.shape[1:]} "
          f"({data_seconds:.0f} s)", flush=True)
    encoder = json.loads(args.encoder)
    missing = [m for m in args.methods if m not in AUX_MODULES]
    methods = [m for m in args.methods if m in AUX_MODULES]
    results: dict = {"dataset": args.dataset, "observations": int(len(obs)), "encoder": encoder, "steps": args.steps,
                     "batch_size": args.batch_size, "missing": missing, "runs": []}
    if missing:
        print(f"not registered in rlkit.auxiliary.AUX_MODULES (skipped): {', '.join(missing)}", flush=True)
    for method in ["random", *methods]:
        for seed in args.seeds:
            weights, seconds = (None, 0.0) if method == "random" else pretrain_run(method, seed, args, encoder, out)
            t0 = time.perf_counter()
            module = build_encoder(data.observation_space, encoder, seed, weights)
            result = probe(features(module, obs), states, episode)
            result.update(method=method, seed=seed, pretrain_seconds=seconds, probe_seconds=time.perf_counter() - t0)
            if args.per_block:
                result["blocks"] = []
                for b, f in enumerate(block_features(module, obs)):
                    if args.blocks is not None and b not in args.blocks:
                        continue
                    live = f[:, f.std(0) > 1e-8]
                    r = probe(live, states, episode)
                    result["blocks"].append({"block": b, "dim": int(f.shape[1]), "dead": float((f.max(0) <= 0).mean()),
                                             "effective_rank": effective_rank(live[::4]), **r})
                    print(f"{method:18s} s{seed}  block {b}: {f.shape[1]} units, dead {result['blocks'][-1]['dead']:.2f}, "
                          f"effective rank {result['blocks'][-1]['effective_rank']:.1f}, R2 mean {r['r2_mean']:.3f}  "
                          + "  ".join(f"{k} {v:.3f}" for k, v in r["r2"].items()), flush=True)
            results["runs"].append(result)
            print(f"{method:18s} s{seed}  R2 mean {result['r2_mean']:.3f}  "
                  + "  ".join(f"{k} {v:.3f}" for k, v in result["r2"].items())
                  + (f"  (pretrain {seconds:.0f} s)" if seconds else ""), flush=True)
    if args.raw_pixels:
        n, c, h, w = obs.shape
        pooled = obs[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))
        result = probe(pooled.reshape(n, -1).astype(np.float64), states, episode)
        result.update(method="raw pixels (2x2 means)", seed=None, pretrain_seconds=0.0)
        results["runs"].append(result)
        print(f"raw pixels          R2 mean {result['r2_mean']:.3f}", flush=True)
    results["wall_seconds"] = time.perf_counter() - start
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(table(results))


def table(results: dict) -> str:
    rows = ["| encoder | " + " | ".join(f"R² {n}" for n in STATE_NAMES) + " | R² mean | seeds |",
            "|---|" + "---:|" * (len(STATE_NAMES) + 2)]
    by: dict[str, list] = {}
    for run in results["runs"]:
        by.setdefault(run["method"], []).append(run)
    for method, runs in by.items():
        cells = []
        for name in STATE_NAMES:
            v = [r["r2"][name] for r in runs]
            cells.append(f"{np.mean(v):.3f} ± {np.std(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}")
        m = [r["r2_mean"] for r in runs]
        mean = f"**{np.mean(m):.3f}** ± {np.std(m):.3f}" if len(m) > 1 else f"**{m[0]:.3f}**"
        rows.append(f"| {method} | " + " | ".join(cells) + f" | {mean} | {len(runs)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
