"""``env.backend: warp``: rlkit/HumanoidImitation-v0 on mujoco-warp (envs/humanoid_warp.py) against plain MuJoCo.

The env tests need mujoco-warp (``pip install 'rlkit-toolkit[warp]'``) and skip without it (CI installs ``.[dev]``
only); they run on warp's CPU device. One env per action mode is shared by the module (building one costs ~2 s;
the first step ever compiles warp's kernels for ~30 s, cached in ~/.cache/warp). The config tests run everywhere.

Tolerances of the match (mujoco-warp computes in float32, MuJoCo in float64; 8 physics substeps per env step,
stiff PD servos): qpos 1e-4, observation 5e-3 absolute (its largest entries, joint velocities, are O(10)),
reward and termination error 1e-4; termination and truncation flags equal. Measured over 12 steps: qpos <= 1.1e-5,
observation <= 8.6e-4, reward <= 1.2e-6. From fallen and contact states (rollouts that fall, random poses on a limb),
one physics substep and one env step match as well once plane-capsule contacts get MuJoCo's frame
(:class:`rlkit.envs.warp_contacts.CapsuleFrameFilter`); ``TOL_CONTACT_STEP`` says what was measured.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from rlkit.config import EnvConfig, build_run_config
from rlkit.errors import ConfigError

KWARGS = {"clips": ["walk"], "max_episode_steps": 38, "residual_scale": 0.3}
FRAMES = np.array([3, 10, 20])
TOL = {"qpos": 1e-4, "obs": 5e-3, "reward": 1e-4, "termination_error": 1e-4}
TOL_CONTACT_STEP = {"substep": {"qpos": 1e-5, "qvel": 1e-3}, "env step": {"qpos": 1e-4, "qvel": 1e-2}}
"""One step from floor-contact states (``test_one_step_from_floor_contact_states_matches_mujoco``); measured over 996
states (scripts/warp_humanoid_contacts.py): substep 4.8e-7 / 2.3e-4, env step 2.8e-5 / 3.7e-3, the last where a
contact's distance reaches 0 within the step and float32 keeps the contact one substep longer than float64."""


# ------------------------------------------------------------------------ config errors (no mujoco-warp needed)


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match=r"env.backend: 'wrap' is not one of \['mujoco', 'warp'\]"):
        build_run_config({"agent": {"name": "mpo"}, "env": {"id": "rlkit/HumanoidImitation-v0", "backend": "wrap"}})


def test_env_without_warp_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="'CartPole-v1' has no mujoco-warp backend.*rlkit/HumanoidImitation-v0"):
        build_run_config({"agent": {"name": "mpo"}, "env": {"id": "CartPole-v1"}}, ["env.backend=warp"])


def test_warp_backend_refuses_other_vectorization():
    with pytest.raises(ConfigError, match="env.vectorization=async: the warp backend"):
        EnvConfig(id="rlkit/HumanoidImitation-v0", backend="warp", vectorization="async")


def test_missing_mujoco_warp_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "mujoco_warp", None)  # find_spec answers None, import raises ImportError
    with pytest.raises(ConfigError, match=r"not installed: pip install 'rlkit-toolkit\[warp\]'"):
        EnvConfig(id="rlkit/HumanoidImitation-v0", backend="warp")
    from rlkit.envs.humanoid_warp import HumanoidImitationWarpEnv

    with pytest.raises(ConfigError, match=r"needs mujoco-warp .*pip install 'rlkit-toolkit\[warp\]'"):
        HumanoidImitationWarpEnv(num_envs=1, **KWARGS)


def test_cli_refuses_a_bad_backend_with_exit_2(tmp_path, capsys):
    from rlkit.cli import main

    config = str(Path(__file__).resolve().parents[1] / "configs" / "mpo_humanoid_walk.yaml")
    assert main(["train", config, f"--run-dir={tmp_path / 'r'}", "env.backend=warp", "env.id=CartPole-v1"]) == 2
    assert "has no mujoco-warp backend" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_bad_device_is_a_config_error(monkeypatch):
    """env.kwargs.device: a name torch does not know, another device type, or a GPU that is not there is one line
    (before: a raw RuntimeError, AssertionError or IndexError from torch)."""
    from rlkit.envs.humanoid_warp import HumanoidImitationWarpEnv
    from rlkit.training.build import make_vector_env

    with pytest.raises(ConfigError, match="device='gpu': the warp backend runs on 'auto', 'cpu', 'cuda'"):
        HumanoidImitationWarpEnv(num_envs=1, device="gpu", **KWARGS)
    with pytest.raises(ConfigError, match="device='meta'"):
        HumanoidImitationWarpEnv(num_envs=1, device="meta", **KWARGS)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ConfigError, match="device='cuda', but torch sees no GPU here"):
        HumanoidImitationWarpEnv(num_envs=1, device="cuda", **KWARGS)
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"device='cuda:3', but torch sees 1 GPU\(s\)"):
        HumanoidImitationWarpEnv(num_envs=1, device="cuda:3", **KWARGS)
    pytest.importorskip("mujoco_warp")  # the run's path (the config checks that mujoco-warp is installed first)
    with pytest.raises(ConfigError, match="device='gpu'"):
        make_vector_env(EnvConfig(id="rlkit/HumanoidImitation-v0", backend="warp", kwargs={**KWARGS, "device": "gpu"}))


def test_step_graph_modes_on_cpu():
    """``cuda_graph``: a bad value or ``true`` off CUDA is one ConfigError; ``auto`` on the CPU device runs the
    substeps eagerly on every call (nothing is captured; capture itself is measured by scripts/gpu_bench.py
    warp-env on a GPU, which compares graph and eager states)."""
    import torch

    from rlkit.envs.humanoid_warp import StepGraph

    with pytest.raises(ConfigError, match="cuda_graph must be 'auto', true or false, got 'yes'"):
        StepGraph(None, torch.device("cpu"), "yes")
    with pytest.raises(ConfigError, match="cuda_graph=true needs a CUDA device.*cpu"):
        StepGraph(None, torch.device("cpu"), True)
    for mode in ("auto", False):
        graph, calls = StepGraph(None, torch.device("cpu"), mode), []
        for _ in range(3):
            graph(lambda: calls.append(1))
        assert not graph.enabled and len(calls) == 3
    from rlkit.envs.humanoid_warp import HumanoidImitationWarpEnv

    pytest.importorskip("mujoco_warp")
    with pytest.raises(ConfigError, match="cuda_graph=true needs a CUDA device"):
        HumanoidImitationWarpEnv(num_envs=1, device="cpu", cuda_graph=True, **KWARGS)


class _FakeCuda:
    """torch.cuda's graph API and warp's capture calls as recorders, so StepGraph's protocol runs without a GPU."""

    def __init__(self, monkeypatch, fail_in_body=False):
        import contextlib

        import torch

        self.events, self.fail_in_body = [], fail_in_body
        fake = self

        class Graph:
            def replay(self):
                fake.events.append("replay")

        class Stream:
            def __init__(self, device=None):
                pass

            def wait_stream(self, other):
                pass

        @contextlib.contextmanager
        def graph(g, pool=None, stream=None, capture_error_mode="global"):
            fake.events.append(f"capture[{capture_error_mode}]")
            fake.capturing = True
            try:
                yield
            finally:
                fake.capturing = False

        @contextlib.contextmanager
        def use_mem_pool(pool, device=None):
            fake.events.append("pool")
            yield

        for name, value in [("CUDAGraph", Graph), ("Stream", Stream), ("graph", graph), ("use_mem_pool", use_mem_pool),
                            ("MemPool", lambda: type("Pool", (), {"id": (0, 1)})()),
                            ("current_stream", lambda device=None: Stream())]:
            monkeypatch.setattr(torch.cuda, name, value, raising=False)
        self.capturing = False

        class Warp:
            CaptureMode = type("CaptureMode", (), {"THREAD_LOCAL": 1})

            @staticmethod
            def stream_from_torch(stream):
                return stream

            @staticmethod
            def ScopedStream(stream):
                return contextlib.nullcontext()

            @staticmethod
            def capture_begin(**kwargs):
                fake.events.append("warp_begin" + ("(external)" if kwargs.get("external") else ""))

            @staticmethod
            def capture_end():
                fake.events.append("warp_end")
                return "warp-graph"

            @staticmethod
            def synchronize_device(device=None):
                fake.events.append("sync")

            @staticmethod
            def device_from_torch(device):
                return device

        self.wp = Warp

    def body(self):
        self.events.append("body(captured)" if self.capturing else "body")
        if self.capturing and self.fail_in_body:
            raise RuntimeError("operation not permitted when stream is capturing")


def test_step_graph_protocol_on_a_fake_gpu(monkeypatch):
    """StepGraph's calls without a GPU (torch.cuda's graph API and warp recorded): the first step runs eagerly
    (it loads the kernels), the second records the body once inside torch's capture with warp told it is external
    and temporaries in the graph's own pool, then replays it; later steps only replay. A capture that fails falls
    back to eager steps on auto (with one warning) and raises on true."""
    import torch

    from rlkit.envs.humanoid_warp import StepGraph

    fake = _FakeCuda(monkeypatch)
    graph = StepGraph(fake.wp, torch.device("cuda"), "auto")
    for _ in range(4):
        graph(fake.body)
    assert fake.events == ["body", "capture[thread_local]", "warp_begin(external)", "pool", "body(captured)",
                           "warp_end", "sync", "replay", "replay", "replay"]
    assert graph.enabled and graph._keep[1] == "warp-graph"

    failing = _FakeCuda(monkeypatch, fail_in_body=True)
    graph = StepGraph(failing.wp, torch.device("cuda"), "auto")
    with pytest.warns(RuntimeWarning, match="failed .*operation not permitted.*stepping eagerly"):
        for _ in range(3):
            graph(failing.body)
    assert not graph.enabled
    assert [e for e in failing.events if e.startswith("body")] == ["body", "body(captured)", "body", "body"]
    assert "replay" not in failing.events
    strict = StepGraph(failing.wp, torch.device("cuda"), True)
    strict(failing.body)
    with pytest.raises(RuntimeError, match="capturing the warp substeps as a CUDA graph failed.*not permitted"):
        strict(failing.body)


def test_default_backend_is_mujoco():
    cfg = build_run_config({"agent": {"name": "mpo"}, "env": {"id": "rlkit/HumanoidImitation-v0"}})
    assert cfg.env.backend == "mujoco"


# ------------------------------------------------------------------------ the env (mujoco-warp on its CPU device)


@pytest.fixture(scope="module", params=["pd_residual", "torque"])
def warp_env(request):
    pytest.importorskip("mujoco_warp")
    from rlkit.training.build import make_vector_env

    cfg = EnvConfig(id="rlkit/HumanoidImitation-v0", num_envs=len(FRAMES), backend="warp",
                    kwargs={**KWARGS, "action_mode": request.param, "device": "cpu"})
    envs = make_vector_env(cfg)  # the path a run takes
    yield envs
    envs.close()


def _cpu_envs(warp_env, frames):
    from rlkit.envs.humanoid_imitation import HumanoidImitationEnv

    envs, obs = [], []
    for f in frames:
        env = HumanoidImitationEnv(**KWARGS, action_mode=warp_env.cpu_env.action_mode)
        obs.append(env.reference_observation(0, int(f)))
        envs.append(env)
    return envs, np.stack(obs)


def test_vector_env_interface(warp_env):
    import gymnasium as gym

    cpu = warp_env.cpu_env
    assert warp_env.num_envs == len(FRAMES)
    assert warp_env.single_observation_space == cpu.observation_space
    assert warp_env.single_action_space == cpu.action_space
    assert warp_env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    obs, info = warp_env.reset(seed=3)
    assert obs.shape == (len(FRAMES), cpu.observation_space.shape[0]) and obs.dtype == np.float32
    obs2, info2 = warp_env.reset(seed=3)  # same seed, same reference states
    np.testing.assert_array_equal(info["frame"], info2["frame"])
    np.testing.assert_array_equal(obs, obs2)
    assert ((info["frame"] >= 0) & (info["frame"] < len(cpu._starts[0]))).all()


def test_rollout_matches_plain_mujoco(warp_env):
    """Same start states, same actions: qpos, observation, reward, termination as MuJoCo's within TOL."""
    obs_w, _ = warp_env.reset(options={"frame": FRAMES})
    cpus, obs_c = _cpu_envs(warp_env, FRAMES)
    np.testing.assert_allclose(obs_w, obs_c, atol=TOL["obs"], rtol=0)
    rng = np.random.default_rng(0)
    compared = 0
    for _ in range(12):
        actions = (0.5 * rng.uniform(-1, 1, (len(FRAMES), 28))).astype(np.float32)
        obs_w, rew_w, term_w, trunc_w, info_w = warp_env.step(actions)
        results = [env.step(a) for env, a in zip(cpus, actions)]
        qpos_c = np.stack([env.data.qpos for env in cpus])
        np.testing.assert_allclose(warp_env._qpos.cpu().numpy(), qpos_c, atol=TOL["qpos"], rtol=0)
        np.testing.assert_allclose(obs_w, np.stack([r[0] for r in results]), atol=TOL["obs"], rtol=0)
        np.testing.assert_allclose(rew_w, [r[1] for r in results], atol=TOL["reward"], rtol=0)
        np.testing.assert_allclose(info_w["termination_error"], [r[4]["termination_error"] for r in results],
                                   atol=TOL["termination_error"], rtol=0)
        np.testing.assert_array_equal(term_w, [r[2] for r in results])
        np.testing.assert_array_equal(trunc_w, [r[3] for r in results])
        compared += 1
        if (term_w | trunc_w).any():  # the CPU envs would need their own reset from here
            break
    assert compared >= 2


def test_truncation_at_max_episode_steps(warp_env):
    warp_env.reset(options={"frame": FRAMES})
    cpus, _ = _cpu_envs(warp_env, FRAMES)
    warp_env._steps[:] = KWARGS["max_episode_steps"] - 1  # one step before the looping clip's time limit
    for env in cpus:
        env._steps = KWARGS["max_episode_steps"] - 1
    actions = np.zeros((len(FRAMES), 28), np.float32)
    _, _, term_w, trunc_w, _ = warp_env.step(actions)
    results = [env.step(a) for env, a in zip(cpus, actions)]
    np.testing.assert_array_equal(term_w, [r[2] for r in results])
    np.testing.assert_array_equal(trunc_w, [r[3] for r in results])
    assert (trunc_w | term_w).all()


def test_per_world_autoreset(warp_env):
    """A world that ends is reset on the next step (NEXT_STEP): reward 0, not done, a reference start state;
    the other worlds go on untouched."""
    warp_env.reset(options={"frame": FRAMES})
    warp_env._qpos[1, 2] += 3.0  # lift world 1 by 3 m: termination error ~0.5 * 3 / 3 > 0.3
    actions = np.zeros((len(FRAMES), 28), np.float32)
    _, _, term, trunc, info = warp_env.step(actions)
    assert term.tolist() == [False, True, False] and not trunc.any()
    frames_before = info["frame"].copy()
    obs, reward, term, trunc, info = warp_env.step(actions)
    assert reward[1] == 0.0 and not term[1] and not trunc[1]
    new_frame, new_clip = int(info["frame"][1]), int(info["clip_index"][1])
    assert 0 <= new_frame < len(warp_env.cpu_env._starts[new_clip])
    assert int(warp_env._steps[1]) == 0
    _, reference_obs = _cpu_envs(warp_env, [new_frame])
    np.testing.assert_allclose(obs[1], reference_obs[0], atol=TOL["obs"], rtol=0)
    np.testing.assert_array_equal(info["frame"][[0, 2]], frames_before[[0, 2]] + 1)  # the others advanced
    assert (reward[[0, 2]] > 0).all()


def test_bad_actions_and_reset_options(warp_env):
    with pytest.raises(ValueError, match="actions of shape"):
        warp_env.step(np.zeros((len(FRAMES) + 1, 28), np.float32))
    with pytest.raises(ValueError, match="unknown reset options"):
        warp_env.reset(options={"phase": 0.5})


def test_several_clips_match_and_draw_in_proportion():
    """Clips of different lengths (padded tables): each world tracks its own clip as MuJoCo does, and reset draws
    clips in proportion to their admissible start frames, frames uniform among them."""
    pytest.importorskip("mujoco_warp")
    from rlkit.envs.humanoid_imitation import HumanoidImitationEnv
    from rlkit.envs.humanoid_warp import HumanoidImitationWarpEnv

    kwargs = {"clips": ["walk", "run"], "action_mode": "pd"}
    envs = HumanoidImitationWarpEnv(num_envs=256, device="cpu", **kwargs)
    try:
        _, info = envs.reset(seed=0)
        counts = np.array([len(s) for s in envs.cpu_env._starts])
        share = np.bincount(info["clip_index"], minlength=2) / 256
        np.testing.assert_allclose(share, counts / counts.sum(), atol=0.09)  # 3 sigma of 256 draws
        for c in range(2):
            frames = info["frame"][info["clip_index"] == c]
            assert frames.min() >= 0 and frames.max() < counts[c] and len(np.unique(frames)) > counts[c] // 2
        clips, frames = np.arange(256) % 2, np.where(np.arange(256) % 2 == 0, 30, 12)
        obs_w, _ = envs.reset(options={"clip_index": clips, "frame": frames})
        cpus = [HumanoidImitationEnv(**kwargs) for _ in range(2)]
        obs_c = np.stack([env.reference_observation(c, int(frames[c])) for c, env in enumerate(cpus)])
        np.testing.assert_allclose(obs_w[:2], obs_c, atol=TOL["obs"], rtol=0)
        actions = (0.3 * np.random.default_rng(1).uniform(-1, 1, (256, 28))).astype(np.float32)
        for _ in range(3):
            obs_w, rew_w, *_ = envs.step(actions)
            results = [env.step(a) for env, a in zip(cpus, actions[:2])]
            np.testing.assert_allclose(obs_w[:2], np.stack([r[0] for r in results]), atol=TOL["obs"], rtol=0)
            np.testing.assert_allclose(rew_w[:2], [r[1] for r in results], atol=TOL["reward"], rtol=0)
    finally:
        envs.close()


def _contacts_script():
    """scripts/warp_humanoid_contacts.py as a module (its state makers and one-step comparisons)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "warp_humanoid_contacts", Path(__file__).resolve().parents[1] / "scripts" / "warp_humanoid_contacts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_step_from_floor_contact_states_matches_mujoco():
    """Both sims at the same state (qpos, qvel, ctrl; zero warmstart), one physics substep and one env step (8
    substeps, same ctrl), at states with floor contacts of every kind: MuJoCo rollouts that fall (zero control,
    random torques, the env's PD tracking with random actions) and random poses resting on a limb capsule, half of
    them steeper than 60 degrees. With the capsule frame filter (installed by the env) all match to float32
    rounding; without it the steep capsules get mujoco-warp 4.0's own friction pyramid and are far apart (measured
    at 48 steep states: filter 8.8e-6 qvel after a substep, 2.0e-6 after an env step; without it 0.22 / 0.33;
    scripts/warp_humanoid_contacts.py has the table per contact kind)."""
    pytest.importorskip("mujoco_warp")
    from rlkit.envs.humanoid_imitation import HumanoidImitationEnv
    from rlkit.envs.humanoid_warp import HumanoidImitationWarpEnv

    script = _contacts_script()
    cpu = HumanoidImitationEnv(**KWARGS, action_mode="pd_residual")
    states = script.rollout_states(cpu, rollouts=3, steps=60, every=10, torque=0.3, seed=0)
    states += script.pose_states(cpu, count=12, torque=0.3, seed=0)
    envs = HumanoidImitationWarpEnv(num_envs=len(states), device="cpu", **KWARGS, action_mode="pd_residual")
    try:
        assert envs._model.callback.contactfilter is envs._contact_filter
        for substeps, tol in ((1, TOL_CONTACT_STEP["substep"]), (cpu.physics_substeps, TOL_CONTACT_STEP["env step"])):
            ref = script.mujoco_steps(cpu.model, states, substeps)
            classes = np.array([r[2] for r in ref])
            q_c, v_c = np.stack([r[0] for r in ref]), np.stack([r[1] for r in ref])
            q_w, v_w = script.warp_steps(envs, states, substeps)
            qpos_err, qvel_err = np.abs(q_w - q_c).max(1), np.abs(v_w - v_c).max(1)
            print(f"{substeps} substep(s): max qpos error {qpos_err.max():.1e}, max qvel error {qvel_err.max():.1e}")
            assert (classes == "capsule >=60").sum() >= 6 and (classes == "capsule <60").sum() >= 6
            assert (classes == "box/sphere").sum() >= 2
            assert qpos_err.max() <= tol["qpos"] and qvel_err.max() <= tol["qvel"]
        steep = classes == "capsule >=60"
        envs._model.callback.contactfilter = None  # mujoco-warp's own plane-capsule frames
        q_w, v_w = script.warp_steps(envs, states, 1)
        ref = script.mujoco_steps(cpu.model, states, 1)
        qvel_err = np.abs(v_w - np.stack([r[1] for r in ref])).max(1)
        print(f"without the filter, one substep: max qvel error {qvel_err[steep].max():.1e} at steep capsules, "
              f"{qvel_err[~steep].max():.1e} elsewhere")
        assert qvel_err[steep].max() > 1e-2 and qvel_err[~steep].max() <= TOL_CONTACT_STEP["substep"]["qvel"]
    finally:
        envs.close()


# ------------------------------------------------------------------------ observations that stay on the device


def test_tensor_obs_returns_the_same_observations_as_a_device_tensor():
    """``tensor_obs=True``: the observations are the env device's float32 tensor, equal to the numpy ones of the
    same seeded steps; reward, flags and infos stay host numpy arrays."""
    pytest.importorskip("mujoco_warp")
    import torch

    from rlkit.envs.humanoid_warp import HumanoidImitationWarpEnv

    with pytest.raises(ConfigError, match="tensor_obs must be true or false, got 'yes'"):
        HumanoidImitationWarpEnv(num_envs=1, device="cpu", tensor_obs="yes", **KWARGS)
    outs = {}
    for flag in (False, True):
        envs = HumanoidImitationWarpEnv(num_envs=2, device="cpu", tensor_obs=flag, **KWARGS)
        rng = np.random.default_rng(0)
        seq = [envs.reset(seed=5)[0]]
        for _ in range(3):
            obs, reward, terminated, truncated, info = envs.step(rng.uniform(-1, 1, (2, 28)).astype(np.float32))
            seq.append(obs)
            assert isinstance(reward, np.ndarray) and isinstance(terminated, np.ndarray)
            assert isinstance(info["frame"], np.ndarray)
        outs[flag] = seq
        envs.close()
    for host, tensor in zip(outs[False], outs[True]):
        assert torch.is_tensor(tensor) and tensor.dtype == torch.float32 and tensor.device.type == "cpu"
        np.testing.assert_array_equal(tensor.numpy(), host)


def test_mpo_trains_the_same_on_device_observations(tmp_path):
    """MPO on the warp backend with ``env.kwargs.tensor_obs: true`` (the collector, the step record and the replay
    take the observations as the device tensor they are) gives the same run as with host arrays: same losses at
    every log point, same final weights."""
    pytest.importorskip("mujoco_warp")
    import json

    import torch

    import rlkit

    config = str(Path(__file__).resolve().parents[1] / "configs" / "mpo_humanoid_walk.yaml")
    runs = {}
    for flag in (False, True):
        run_dir = tmp_path / f"tensor_obs_{flag}"
        rlkit.train(config, run_dir=run_dir, overrides={
            "env.backend": "warp", "env.num_envs": 2, "env.kwargs": {**KWARGS, "device": "cpu", "tensor_obs": flag},
            "agent.policy_hidden": [16], "agent.critic_hidden": [16], "agent.num_samples": 4,
            "train.total_steps": 40, "train.learning_starts": 20, "train.batch_size": 8, "train.eval_every": 40,
            "train.eval_episodes": 1, "train.checkpoint_every": 40, "log.log_every": 10, "log.progress": False,
            "log.tensorboard": False, "log.plot": False, "device": "cpu", "seed": 4})
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        runs[flag] = ([{k: v for k, v in r.items() if k not in ("time", "sps")} for r in records if r["kind"] == "train"],
                      torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)["agent"])
    assert runs[False][0] and runs[False][0] == runs[True][0]

    def tensors(tree, prefix=""):  # the agent's state (parts' and optimizers' state dicts), flattened
        if torch.is_tensor(tree):
            return {prefix: tree}
        items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
        return {k: v for key, sub in items for k, v in tensors(sub, f"{prefix}/{key}").items()}

    host, device = tensors(runs[False][1]), tensors(runs[True][1])
    assert len(host) > 10 and host.keys() == device.keys()
    for key, value in host.items():
        torch.testing.assert_close(device[key], value, rtol=0, atol=0, msg=key)
