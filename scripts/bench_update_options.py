"""Update time under ``train.precision`` and ``train.compile`` (issue 22's "options, each measured"), interleaved.

    python scripts/bench_update_options.py [--config configs/dt_hopper_medium.yaml] [--device cpu]
                                           [--rounds 6] [--chunk 20] [--threads 1]

Builds the config's agent three times from one seed (plain float32; bf16 autocast; ``torch.compile``d with the
default inductor backend), draws batches from the config's experience (an offline config's dataset; an online
config's env filled by random actions into a replay of 5,000 rows), compiles and warms every variant up first
(the compile time is printed apart), then times chunks of ``--chunk`` updates per variant in turn, ``--rounds``
times, so drifting load on a shared machine hits all alike. Prints the median ms per update per variant and the
ratio to float32; the last losses show that the variants train the same model (bf16 changes rounding).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np
import torch

from rlkit.config import load_config
from rlkit.training.build import build_agent, build_experience, make_vector_env, resolve_device


def _source(cfg, device):
    if cfg.offline is not None:
        from rlkit.experience.sources import dataset_source

        dataset, experience = dataset_source(cfg, device)
        return dataset.observation_space, dataset.action_space, experience, dataset
    envs = make_vector_env(cfg.env)
    replay = build_experience(cfg, envs.single_observation_space, envs.single_action_space, envs.num_envs, device)
    obs, _ = envs.reset(seed=cfg.seed)
    for _ in range(5000 // envs.num_envs):
        actions = envs.action_space.sample()
        nxt, rewards, terminated, truncated, _ = envs.step(actions)
        replay.add(nxt, actions, rewards, terminated, truncated, np.zeros(envs.num_envs, dtype=bool))
    return envs.single_observation_space, envs.single_action_space, replay, None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/dt_hopper_medium.yaml")
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--chunk", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variants", nargs="+", default=["fp32", "bf16", "compile"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, [f"device={args.device}"])
    device = resolve_device(args.device)
    obs_space, act_space, source, dataset = _source(cfg, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    agents, contexts = {}, {}
    for name in args.variants:
        torch.manual_seed(cfg.seed)
        agent = build_agent(cfg, obs_space, act_space, device)
        if dataset is not None:
            agent.observe_dataset(dataset)
        t0 = time.perf_counter()
        if name == "compile":
            agent.compile()
        contexts[name] = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if name == "bf16" \
            else contextlib.nullcontext
        for _ in range(3):  # compiles on the first calls
            with contexts[name]():
                agent.update(source.sample(cfg.train.batch_size))
        sync()
        print(f"{name}: build + first 3 updates {time.perf_counter() - t0:.1f} s", flush=True)
        agents[name] = agent
    times: dict[str, list[float]] = {n: [] for n in args.variants}
    last: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, agent in agents.items():
            batches = [source.sample(cfg.train.batch_size) for _ in range(args.chunk)]
            sync()
            t0 = time.perf_counter()
            for batch in batches:
                with contexts[name]():
                    metrics = agent.update(batch)
            sync()
            times[name].append(1e3 * (time.perf_counter() - t0) / args.chunk)
            loss = next((v for k, v in metrics.items() if "loss" in k), None)
            last[name] = float(loss) if loss is not None else float("nan")
    base = statistics.median(times[args.variants[0]])
    print(f"\n{cfg.agent.name} ({args.config}), device {device}, {args.threads} thread(s), batch {cfg.train.batch_size}, "
          f"{args.rounds} x {args.chunk} updates per variant, interleaved")
    print("| variant | ms / update (median of rounds) | range | vs " + args.variants[0] + " | last loss |")
    print("|---|---:|---|---:|---:|")
    for name in args.variants:
        med = statistics.median(times[name])
        print(f"| {name} | {med:.2f} | {min(times[name]):.2f}..{max(times[name]):.2f} | {base / med:.2f}x | "
              f"{last[name]:.4f} |")


if __name__ == "__main__":
    main()
