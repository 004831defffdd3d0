"""``rlkit/HumanoidImitation-v0`` on mujoco-warp: N humanoid worlds stepped together on one warp device.

``env.backend: warp`` in a run's config selects it (``rlkit.training.build.make_vector_env``); in Python::

    envs = HumanoidImitationWarpEnv(num_envs=1024, clips=["walk"], action_mode="pd_residual")  # device="auto"

It is a gymnasium :class:`~gymnasium.vector.VectorEnv` with the NEXT_STEP autoreset that rlkit's collector
expects, the observation, action and reward of :class:`rlkit.envs.humanoid_imitation.HumanoidImitationEnv`
(its docstring holds the contract and the CoMic reward's equations) and the same keyword arguments, plus
``device`` (``auto``: ``cuda`` when torch sees a GPU, else warp's ``cpu`` device), ``nconmax`` (contacts per
world), ``njmax`` (constraint rows per world), ``cuda_graph`` (``auto``: on CUDA the physics substeps of a step
are replayed as one CUDA graph, :class:`StepGraph`) and ``tensor_obs`` (false: observations as host numpy arrays,
the gymnasium convention; true: as a float32 torch tensor on the env's device, which rlkit's collector, agents and
replay take as it is, so a GPU learner's observations never leave the GPU). The physics is mujoco-warp's ``step`` on one
``mujoco_warp.Data`` of ``num_envs`` worlds; everything around it runs batched on the same device on torch views
of warp's arrays (``warp.to_torch``, zero-copy):

* the PD targets of the actions (ball joints ``q* = exp(a * scale)``, or ``q_ref * exp(...)`` in
  ``pd_residual`` mode; hinges mapped from [-1, 1]), and per physics substep the servo command
  ``ctrl = kp * diff(q, q*)`` (``diff`` = ``mj_differentiatePos``: ``log(q^-1 q*)`` per ball joint) on the
  model whose motors the CPU env turned into implicit PD servos (the same ``MjModel`` goes to ``put_model``);
* the reference of every world's clip at its own frame ``k`` (precomputed tables of the CPU env: ``qpos``,
  ``qvel`` and dm_control's features of every clip frame, padded over clips; looping clips add their cycle
  offset), the tracking errors, the CoMic reward, early termination (``e > e_max``) and truncation;
* the observation (proprioception and the ``ref_steps`` look-aheads, egocentric);
* resets: reference state initialisation at a random clip (probability proportional to its admissible start
  frames) and a uniformly random admissible frame, drawn on the device for all resetting worlds at once.

Each step returns host numpy arrays: one stacked device tensor is copied to the host once per step (on the CPU
device that is a view); with ``tensor_obs=True`` the observations stay a device tensor and only reward, flags and
infos (a few floats per world) are copied.

Where it differs from the CPU env (the closest exact thing that batches):

* Precision: mujoco-warp computes in float32 (MuJoCo in float64); tests/test_warp_backend.py bounds the gap.
  With ``pd_damping="explicit"`` (unstable at 240 Hz: the servos chatter) the targets and commands still match
  to ~4e-7 but float32 rounding grows along the trajectory (qpos 6e-2 apart after 10 steps of small random
  actions), so trajectories match only with the default implicit damping.
* Contact frames: a limb capsule (upper arm, forearm, thigh, shin) touching the floor at more than 60 degrees
  from it (a shin or an upper arm standing on its end) gets a different friction pyramid from mujoco-warp 4.0 than
  from MuJoCo (the model's cone is pyramidal): qvel up to 0.22 apart after one substep from the same state. It is
  rare here (the feet, hands and the next limb usually reach the floor first: none in 900 states of falling
  rollouts, ~3% of random poses), but :class:`rlkit.envs.warp_contacts.CapsuleFrameFilter`, the model's
  ``callback.contactfilter`` shared with the Ant maze's backend, gives those contacts MuJoCo's frame (its
  docstring says how the engines differ). Feet (boxes), spheres and flatter capsules match without it.
* Random streams: ``reset(seed=s)`` seeds one torch generator for all worlds, so the draws have the CPU env's
  distribution, not the streams of gymnasium's per-sub-env seeds ``s + i``. ``reset(options={"clip_index":
  [...], "frame": [...]})`` starts every world at a given reference state (tests, reproducible studies).
* Divergence: MuJoCo resets a world itself on a bad acceleration and counts a warning, which the CPU env treats
  as divergence; mujoco-warp has no such check, so a world diverges here when, after any substep, an entry of its
  ``qacc`` is not finite or exceeds MuJoCo's ``mjMAXVAL`` (1e10, ``mj_checkAcc``'s test). As on the CPU such a
  world is put back into the reference state of its current frame, with reward 0 and ``terminated``.
* Reset of a world's data: ``mujoco_warp.reset_data`` re-creates its kernels on every call (about 4 ms on the
  CPU device), so a resetting world gets what ``mj_resetData`` + ``mj_forward`` leave that the next step reads:
  reference ``qpos`` / ``qvel``, zero ``ctrl``, ``act``, ``qacc_warmstart``, applied forces and ``time``, and
  positions from ``kinematics`` + ``com_pos``.
* No rendering (``render_mode`` must be None) and no exact resume (a resumed run re-seeds its envs, as with
  ALE's native vector env).
* The autoreset step still integrates the resetting worlds with their (ignored) actions before overwriting them
  with their new reference state: one batched step for all worlds is cheaper than splitting the batch.

``info`` holds, per world, ``termination_error``, ``clip_index``, ``frame``, ``diverged``, the weighted reward
terms ``reward_*`` and the squared errors ``error_*`` (on an autoreset step: those of the new start state).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlkit.envs.humanoid_imitation import HumanoidImitationEnv
from rlkit.envs.warp_contacts import CapsuleFrameFilter
from rlkit.errors import ConfigError

WARP_INSTALL = "pip install 'rlkit-toolkit[warp]' (mujoco-warp==4.0.0 and warp-lang==1.19.0)"
MJ_MAXVAL = 1e10
"""MuJoCo's ``mjMAXVAL``: an acceleration above it is a divergence (``mj_checkAcc``)."""
SQ_KEYS = ("center_of_mass", "joints_velocity", "appendages", "body_quaternions")
TERM_KEYS = (*SQ_KEYS, "termination")


# ------------------------------------------------------------------------ quaternions (w, x, y, z), batched


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], dim=-1)


def quat_conj(q: torch.Tensor) -> torch.Tensor:
    return torch.cat([q[..., :1], -q[..., 1:]], dim=-1)  # no host constant: it runs inside CUDA graph captures


def quat_to_rotvec(q: torch.Tensor) -> torch.Tensor:
    """MuJoCo's ``mju_quat2Vel(q, 1)``: axis * angle, angle = 2 atan2(|v|, w) wrapped into (-pi, pi]."""
    v = q[..., 1:]
    norm = v.norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(norm, q[..., :1])
    angle = torch.where(angle > torch.pi, angle - 2.0 * torch.pi, angle)
    return v / norm.clamp_min(1e-15) * angle


def rotvec_to_quat(v: torch.Tensor) -> torch.Tensor:
    """exp(v) = [cos(|v|/2), sin(|v|/2) v / |v|]."""
    angle = v.norm(dim=-1, keepdim=True)
    sinc = torch.where(angle > 1e-12, torch.sin(angle / 2) / angle.clamp_min(1e-12), torch.full_like(angle, 0.5))
    return torch.cat([torch.cos(angle / 2), sinc * v], dim=-1)


def bounded_quat_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dm_control's distance ||log(a b^-1)|| for the closer of +-b (as the CPU env's ``bounded_quat_dist``)."""
    rel = quat_mul(a, quat_conj(b))
    return torch.arccos((rel[..., 0].abs() / rel.norm(dim=-1)).clamp(0.0, 1.0))


def _sign_fix(q: torch.Tensor) -> torch.Tensor:
    return torch.where(q[..., :1] < 0, -q, q)


def _warp_device(device: Any) -> torch.device:
    """``env.kwargs.device`` as the torch device the worlds live on: ``auto`` (cuda when torch sees a GPU, else
    cpu), ``cpu``, ``cuda`` or ``cuda:N``; anything else, or a GPU torch does not see, is a ConfigError."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"env.kwargs.device={device!r}: the warp backend runs on 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"env.kwargs.device={device!r}, but torch sees no GPU here; use device: auto or cpu")
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"env.kwargs.device={device!r}, but torch sees {count} GPU(s) (cuda:0 .. cuda:{count - 1})")
        if dev.index is None:  # warp and torch name the same GPU
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


# ------------------------------------------------------------------------ the vector env


def import_warp(device: Any, num_envs: int, render_mode: str | None):
    """(mujoco_warp, warp) for a warp backend, quiet, after the checks every backend makes first: the device, a
    missing install (the line names the extra), rendering (none) and ``num_envs`` >= 1, each one ConfigError."""
    _warp_device(device)  # a bad device is one line before anything is imported or built
    try:
        import warp as wp

        wp.config.quiet = True  # no start banner
        wp.config.log_level = max(wp.config.log_level, wp.LOG_WARNING)  # no line per kernel module loaded
        import mujoco_warp as mjw
    except ImportError as exc:
        raise ConfigError(f"env.backend=warp needs mujoco-warp ({exc}); install it: {WARP_INSTALL}") from None
    if render_mode is not None:
        raise ConfigError(f"the warp backend does not render (render_mode={render_mode!r}); use env.backend: mujoco")
    if int(num_envs) < 1:
        raise ConfigError(f"num_envs must be >= 1, got {num_envs}")
    return mjw, wp


def put_worlds(wp, mjw, mj_model, device: torch.device, num_worlds: int, nconmax: int, njmax: int):
    """(warp device, mujoco-warp Model, Data of ``num_worlds`` worlds, warp stream or None) for ``mj_model`` on
    ``device``; on CUDA warp launches on torch's current stream, so the zero-copy torch views stay ordered."""
    wp.init()
    wp_device = wp.device_from_torch(device)
    with wp.ScopedDevice(wp_device):
        model = mjw.put_model(mj_model)
        data = mjw.make_data(mj_model, nworld=int(num_worlds), nconmax=int(nconmax), njmax=int(njmax))
    stream = wp.stream_from_torch(torch.cuda.current_stream(device)) if device.type == "cuda" else None
    return wp_device, model, data, stream


def warp_scope(wp, wp_device, stream):
    """The context warp's launches of one backend run in: its device, and on CUDA torch's stream, so the zero-copy
    torch views stay ordered with the kernels."""
    import contextlib

    stack = contextlib.ExitStack()
    stack.enter_context(wp.ScopedDevice(wp_device))
    if stream is not None:
        stack.enter_context(wp.ScopedStream(stream))
    return stack


class StepGraph:
    """The physics substeps of a warp backend, run eagerly or replayed as one CUDA graph.

    Why: on the H200 one vector step of the humanoid took ~100 ms at 1k, 4k and 16k worlds alike
    (docs/benchmarks.md, "GPU rows on a lent H200"): ``mjw.step`` issues hundreds of small kernels per substep and
    the step was bound by launching them, not by the worlds' arithmetic. Eagerly, the constraint solver's loop
    (``wp.capture_while`` in mujoco-warp's ``solver.py``) also reads its count of unconverged worlds on the host
    once per iteration. A CUDA graph records the substep loop once (warp's kernels, the contact-frame filter's and
    the servos' torch ops, all on one stream; the solver loop as a conditional node) and replays it with one
    launch, which is how mujoco-warp's own benchmark (``testspeed.py``) reaches its published rates.

    ``body`` must read and write only tensors and warp arrays whose storage stays put (the worlds' ``Data``,
    buffers allocated once), with Python control flow that does not change between calls: a graph replays the
    recorded kernels on the recorded addresses. The recipe is warp's for torch-initiated captures: torch's
    ``torch.cuda.graph`` owns the capture (its private memory pool serves the torch ops' temporaries) on a side
    stream that warp launches on, and ``wp.capture_begin(external=True)`` tells warp a capture is under way.

    ``mode``: ``"auto"`` captures on CUDA and runs eagerly on warp's CPU device; ``True`` requires CUDA (a
    ConfigError otherwise); ``False`` always runs eagerly. The first call runs eagerly (it loads the kernels), the
    second captures and then replays, every later call replays. A capture that fails (a host sync inside
    ``body`` in some mujoco-warp version, say) warns once and falls back to eager steps on ``"auto"``, and raises
    on ``True``.
    """

    def __init__(self, wp, device: torch.device, mode: str | bool = "auto"):
        if mode not in ("auto", True, False):
            raise ConfigError(f"env.kwargs.cuda_graph must be 'auto', true or false, got {mode!r}")
        if mode is True and device.type != "cuda":
            raise ConfigError(f"env.kwargs.cuda_graph=true needs a CUDA device, the warp backend runs on {device}; use "
                              "cuda_graph: auto (graphs on CUDA, eager steps elsewhere) or device: cuda")
        self._wp, self._device, self._mode = wp, device, mode
        self.enabled = device.type == "cuda" and mode is not False
        """Whether calls are (to be) replayed as a CUDA graph; False after a failed ``"auto"`` capture."""
        self._graph: Any = None
        self._keep: tuple = ()  # what the graph's replays need alive: its memory pool and warp's Graph
        self._calls = 0

    def __call__(self, body) -> None:
        self._calls += 1
        if not self.enabled or self._calls == 1:
            body()
            return
        if self._graph is None:
            self._graph = self._capture(body)
            if self._graph is None:  # "auto" and the capture failed: this and later calls run eagerly
                body()
                return
        self._graph.replay()

    def _capture(self, body):
        """Record ``body`` once. Every torch allocation inside it comes from a memory pool of its own
        (``use_mem_pool``), not only those torch attributes to the capture: mujoco-warp's solver loop
        (``wp.capture_while``) pauses and resumes the stream capture, and the caching allocator routes a
        block to the graph's pool by capture id, so a temporary made after a resume could otherwise come from
        (and go back to) the ordinary pool, where eager code would reuse memory the replays still write."""
        import warnings

        wp, device = self._wp, self._device
        failure: list[BaseException] = []
        try:
            stream = torch.cuda.Stream(device=device)
            stream.wait_stream(torch.cuda.current_stream(device))
            graph, pool = torch.cuda.CUDAGraph(), torch.cuda.MemPool()  # MemPool: torch >= 2.6
            with wp.ScopedStream(wp.stream_from_torch(stream)), \
                    torch.cuda.graph(graph, pool=pool.id, stream=stream, capture_error_mode="thread_local"):
                wp.capture_begin(force_module_load=False, external=True, capture_mode=wp.CaptureMode.THREAD_LOCAL)
                try:
                    with torch.cuda.use_mem_pool(pool, device=device):
                        body()
                except BaseException as exc:  # the first error: ending the capture may raise again
                    failure.append(exc)
                    raise
                finally:
                    warp_graph = wp.capture_end()
        except Exception as exc:  # noqa: BLE001 - reported, then eager steps (or raised on cuda_graph=true)
            cause = failure[0] if failure else exc
            if self._mode is True:
                raise RuntimeError(f"capturing the warp substeps as a CUDA graph failed: {cause!r}") from cause
            warnings.warn(f"warp backend: capturing the physics substeps as a CUDA graph failed ({cause!r}); "
                          "stepping eagerly (set cuda_graph: false to silence this)", RuntimeWarning, stacklevel=3)
            self.enabled = False
            return None
        wp.synchronize_device(wp.device_from_torch(device))  # runs the frees warp deferred during the capture
        torch.cuda.current_stream(device).wait_stream(stream)
        self._keep = (pool, warp_graph)  # warp's Graph holds the kernel modules the recorded launches use
        return graph


class HumanoidImitationWarpEnv(gym.vector.VectorEnv):
    """``num_envs`` humanoid imitation worlds on one mujoco-warp ``Data``; see the module docstring."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, device: str = "auto", nconmax: int = 64, njmax: int = 256,
                 render_mode: str | None = None, cuda_graph: str | bool = "auto", tensor_obs: bool = False,
                 **env_kwargs: Any):
        mjw, wp = import_warp(device, num_envs, render_mode)
        if not isinstance(tensor_obs, bool):
            raise ConfigError(f"env.kwargs.tensor_obs must be true or false, got {tensor_obs!r}")
        self._tensor_obs = tensor_obs
        self._mjw, self._wp = mjw, wp
        self.cpu_env = cpu = HumanoidImitationEnv(**env_kwargs)  # the model with its servos, the clips' tables
        self.num_envs = n = int(num_envs)
        self.single_observation_space = cpu.observation_space
        self.single_action_space = cpu.action_space
        self.observation_space = gym.vector.utils.batch_space(cpu.observation_space, n)
        self.action_space = gym.vector.utils.batch_space(cpu.action_space, n)
        self.metadata = {**self.metadata, "render_fps": cpu.metadata["render_fps"]}
        self.device = _warp_device(device)
        self._wp_device, self._model, self._data, self._stream = put_worlds(wp, mjw, cpu.model, self.device, n,
                                                                            nconmax, njmax)
        d = self._data
        view = wp.to_torch  # zero-copy torch views of the worlds' state
        self._qpos, self._qvel, self._qacc, self._ctrl = view(d.qpos), view(d.qvel), view(d.qacc), view(d.ctrl)
        self._xpos, self._xquat, self._xmat = view(d.xpos), view(d.xquat), view(d.xmat)
        self._subtree_com, self._site_xpos = view(d.subtree_com), view(d.site_xpos)
        self._cleared = [view(getattr(d, f)) for f in ("qacc_warmstart", "act", "qfrc_applied", "xfrc_applied",
                                                        "time") if getattr(d, f).size > 0]
        self._contact_filter = CapsuleFrameFilter(cpu.model, self._model, d).install()  # MuJoCo's capsule frames
        self._step_graph = StepGraph(wp, self.device, cuda_graph)
        self._target = self._qpos.clone()   # a step's PD targets: the substeps' (and their graph's) fixed input,
        self._command = self._ctrl.clone()  # or its torques in ``torque`` mode
        self._diverged = torch.zeros(n, dtype=torch.bool, device=self.device)  # and their fixed output
        self._tables()
        self._clip = torch.zeros(n, dtype=torch.long, device=self.device)
        self._k = torch.zeros_like(self._clip)
        self._steps = torch.zeros_like(self._clip)
        self._autoreset = torch.zeros(n, dtype=torch.bool, device=self.device)
        self._generator = torch.Generator(device=self.device)
        self._generator.seed()

    def _tables(self) -> None:
        """The CPU env's index maps, gains and per-clip reference tables as device tensors (float32)."""
        cpu, dev, f32 = self.cpu_env, self.device, torch.float32
        m, lib = cpu.model, cpu.library

        def t(x, dtype=f32):
            return torch.as_tensor(np.asarray(x), dtype=dtype, device=dev)

        self._ball_qidx, self._ball_act = t(cpu._ball_qidx, torch.long), t(cpu._ball_act, torch.long)
        self._ball_scale = t(cpu._ball_scale)
        self._hinge_qadr, self._hinge_act = t(cpu._hinge_qadr, torch.long), t(cpu._hinge_act, torch.long)
        self._hinge_low, self._hinge_high = t(cpu._hinge_low), t(cpu._hinge_high)
        # joint-space difference of the non-root joints (mj_differentiatePos[6:]): dof columns per joint kind
        ball_dofs, hinge_dofs = [], []
        for j in range(1, m.njnt):
            adr = int(m.jnt_dofadr[j]) - 6
            (ball_dofs.append([adr, adr + 1, adr + 2]) if m.jnt_type[j] == 1 else hinge_dofs.append(adr))
        self._ball_dofs = t(np.array(ball_dofs, dtype=int).reshape(-1, 3), torch.long)
        self._hinge_dofs = t(np.array(hinge_dofs, dtype=int), torch.long)
        self._ndof = m.nv - 6
        self._kp, self._kd, self._gear = t(cpu._kp), t(cpu._kd), t(cpu._gear)
        self._root, self._sites = int(cpu._root), t(cpu._sites, torch.long)
        # reference tables [C, F_max, ...] (padded with each clip's last frame; rows past it are never read)
        frames = [c.num_frames for c in lib.clips]
        fmax = max(frames)

        def pad(a):
            a = np.asarray(a, dtype=np.float64)
            return np.concatenate([a, np.repeat(a[-1:], fmax - len(a), axis=0)])

        self._ref_qpos = t(np.stack([pad(c.qpos) for c in lib.clips]))
        self._ref_qvel = t(np.stack([pad(v) for v in lib._qvel]))
        self._ref_feat = {key: t(np.stack([pad(cpu._ref[i][key]) for i in range(len(lib))]))
                          for key in ("center_of_mass", "appendages", "body_positions", "body_quaternions")}
        self._frames = t(frames, torch.long)
        self._loop = t([c.loop for c in lib.clips], torch.bool)
        self._cycle_offset = t(np.stack([c.cycle_offset for c in lib.clips]))
        counts = [len(s) for s in cpu._starts]
        self._start_count = t(counts, torch.long)
        self._start_weight = t(counts, torch.float64)
        self._ref_steps = t(cpu.ref_steps, torch.long)

    # ---------------------------------------------------------------- reference

    def _ref_index(self, clip: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row in the clip tables, world translation to add) of frame ``k`` (any shape; ``clip`` broadcasts)."""
        frames, loop = self._frames[clip], self._loop[clip]
        period = (frames - 1).clamp_min(1)
        cycle = torch.where(loop, torch.div(k, period, rounding_mode="floor"), torch.zeros_like(k))
        row = torch.where(loop, k - cycle * period, k.clamp(min=0).minimum(frames - 1))
        return row, cycle.unsqueeze(-1).to(torch.float32) * self._cycle_offset[clip]

    def _ref_qpos_at(self, clip, row, offset):
        q = self._ref_qpos[clip, row].clone()
        q[..., :3] += offset
        return q

    # ---------------------------------------------------------------- actions and physics

    def _joint_diff(self, q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
        """``mj_differentiatePos(q1 -> q2)[6:]``, batched: ``log(q1^-1 q2)`` per ball joint, ``q2 - q1`` per hinge."""
        out = q1.new_zeros(*q1.shape[:-1], self._ndof)
        ball = quat_to_rotvec(quat_mul(quat_conj(q1[..., self._ball_qidx]), q2[..., self._ball_qidx]))
        out[..., self._ball_dofs] = ball
        out[..., self._hinge_dofs] = q2[..., self._hinge_qadr] - q1[..., self._hinge_qadr]
        return out

    def _pd_target(self, action: torch.Tensor) -> torch.Tensor:
        """The CPU env's ``pd_target`` for all worlds (root entries: the current state's)."""
        cpu = self.cpu_env
        target = self._qpos.clone()
        residual = cpu.action_mode == "pd_residual"
        scale = cpu.residual_scale if residual else 1.0
        quat = rotvec_to_quat(action[:, self._ball_act] * self._ball_scale * scale)     # [N, J, 4]
        lo, hi, hinge = self._hinge_low, self._hinge_high, action[:, self._hinge_act]   # [H], [H], [N, H]
        if residual:
            row, offset = self._ref_index(self._clip, self._k + 1)
            ref = self._ref_qpos_at(self._clip, row, offset)
            quat = quat_mul(ref[:, self._ball_qidx], quat)
            target[:, self._hinge_qadr] = torch.clamp(ref[:, self._hinge_qadr] + hinge * scale * 0.5 * (hi - lo), lo, hi)
        else:
            target[:, self._hinge_qadr] = lo + (hinge + 1.0) * 0.5 * (hi - lo)
        target[:, self._ball_qidx] = quat
        return target

    def _simulate(self, action: torch.Tensor) -> torch.Tensor:
        """``physics_substeps`` mujoco-warp steps of all worlds; returns which worlds diverged (see the docstring).

        The substeps read the step's command from ``self._target`` (PD targets) or ``self._command`` (torques, in
        ``torque`` mode) and write the divergence flags to ``self._diverged``, both allocated once, so that
        :class:`StepGraph` can replay them as one CUDA graph."""
        if self.cpu_env.action_mode == "torque":
            self._command.copy_(action)
        else:
            self._target.copy_(self._pd_target(action))
        self._step_graph(self._substeps)
        return self._diverged.clone()

    def _substeps(self) -> None:
        cpu, m, d = self.cpu_env, self._model, self._data
        target = self._target
        bad = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        for _ in range(cpu.physics_substeps):
            if cpu.action_mode == "torque":
                self._ctrl.copy_(self._command)
            elif cpu.pd_damping == "implicit":
                self._ctrl.copy_(self._kp * self._joint_diff(self._qpos, target))
            else:
                tau = self._kp * self._joint_diff(self._qpos, target) - self._kd * self._qvel[:, 6:]
                self._ctrl.copy_((tau / self._gear).clamp(-1.0, 1.0))
            self._mjw.step(m, d)
            bad |= ~(self._qacc.abs() <= MJ_MAXVAL).all(dim=1)  # NaN compares False
        bad |= ~torch.isfinite(self._qpos).all(dim=1) | ~torch.isfinite(self._qvel).all(dim=1)
        self._diverged.copy_(bad)

    def _set_reference_state(self, mask: torch.Tensor) -> None:
        """Worlds in ``mask``: what ``mj_resetData`` leaves, then the reference ``qpos`` / ``qvel`` of their frame."""
        idx = mask.nonzero().squeeze(1)
        if idx.numel() == 0:
            return
        clip, k = self._clip[idx], self._k[idx]
        row, offset = self._ref_index(clip, k)
        self._qpos[idx] = self._ref_qpos_at(clip, row, offset)
        self._qvel[idx] = self._ref_qvel[clip, row]
        self._ctrl[idx] = 0.0
        for field in self._cleared:
            field[idx] = 0

    def _draw_starts(self, mask: torch.Tensor) -> None:
        """Reference state initialisation of the worlds in ``mask``: clip and start frame drawn on the device."""
        n = int(mask.sum())
        if n == 0:
            return
        clip = torch.multinomial(self._start_weight, n, replacement=True, generator=self._generator)
        u = torch.rand(n, generator=self._generator, device=self.device, dtype=torch.float64)
        frame = (u * self._start_count[clip]).long().minimum(self._start_count[clip] - 1)
        self._clip[mask], self._k[mask], self._steps[mask] = clip, frame, 0

    # ---------------------------------------------------------------- features, reward, observation

    def _errors(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The CPU env's ``_errors`` for all worlds: squared tracking errors [N] and the termination error [N]."""
        cpu, clip = self.cpu_env, self._clip
        row, offset = self._ref_index(clip, self._k)
        feat = {key: table[clip, row] for key, table in self._ref_feat.items()}
        root_pos, root_mat = self._xpos[:, self._root], self._xmat[:, self._root]
        appendages = (self._site_xpos[:, self._sites] - root_pos[:, None]) @ root_mat
        sq = {
            "center_of_mass": ((self._subtree_com[:, self._root] - feat["center_of_mass"] - offset) ** 2).sum(-1),
            "joints_velocity": ((self._qvel[:, 6:] - self._ref_qvel[clip, row, 6:]) ** 2).sum(-1),
            "appendages": ((appendages - feat["appendages"]) ** 2).sum((-1, -2)),
            "body_quaternions": (bounded_quat_dist(self._xquat[:, 1:], feat["body_quaternions"]) ** 2).sum(-1),
        }
        ref_q = self._ref_qpos_at(clip, row, offset)
        error_joints = self._joint_diff(ref_q, self._qpos).abs().mean(-1)
        error_bodies = (self._xpos[:, 1:] - feat["body_positions"] - offset[:, None]).abs().mean((-1, -2))
        return sq, 0.5 * cpu.body_error_multiplier * error_bodies + 0.5 * error_joints

    def _reward(self, sq: dict[str, torch.Tensor], e: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """:class:`~rlkit.envs.humanoid_imitation.TrackingReward` on tensors."""
        r = self.cpu_env.reward_fn
        pose = {"center_of_mass": r.com_weight * torch.exp(-r.com_scale * sq["center_of_mass"]),
                "joints_velocity": r.joints_velocity_weight * torch.exp(-r.joints_velocity_scale * sq["joints_velocity"]),
                "appendages": r.appendages_weight * torch.exp(-r.appendages_scale * sq["appendages"]),
                "body_quaternions": r.body_quaternions_weight * torch.exp(-r.body_quaternions_scale
                                                                          * sq["body_quaternions"])}
        z = (r.com_weight + r.joints_velocity_weight + r.appendages_weight + r.body_quaternions_weight) \
            if r.normalize else 1.0
        terms = {k: r.pose_weight * v / z for k, v in pose.items()}
        terms["termination"] = r.termination_weight * (1.0 - e / self.cpu_env.termination_error_threshold)
        return sum(terms.values()), terms

    def _observation(self) -> torch.Tensor:
        """The CPU env's ``_observation`` for all worlds: [N, obs_dim] float32."""
        n, clip = self.num_envs, self._clip
        root_pos, root_mat = self._xpos[:, self._root], self._xmat[:, self._root]          # [N, 3], [N, 3, 3]
        joints = self._qpos[:, 7:].clone()
        joints[:, self._ball_qidx - 7] = _sign_fix(self._qpos[:, self._ball_qidx])
        body_rel = (self._xpos[:, 2:] - root_pos[:, None]) @ root_mat                      # [N, B, 3]
        lin_vel = (self._qvel[:, None, 0:3] @ root_mat).squeeze(1)
        parts = [root_pos[:, 2:3], root_mat[:, 2], lin_vel, self._qvel[:, 3:6], joints, self._qvel[:, 6:],
                 body_rel.reshape(n, -1)]
        s = len(self._ref_steps)
        k = self._k[:, None] + self._ref_steps                                             # [N, S]
        row, offset = self._ref_index(clip[:, None], k)                                    # [N, S], [N, S, 3]
        ref_q = self._ref_qpos_at(clip[:, None], row, offset)                              # [N, S, nq]
        rel_quat = _sign_fix(quat_mul(quat_conj(self._xquat[:, None, self._root]), ref_q[..., 3:7]))
        dq = self._joint_diff(self._qpos[:, None].expand(-1, s, -1), ref_q)               # [N, S, ndof]
        ref_bodies = self._ref_feat["body_positions"][clip[:, None], row][:, :, 1:] + offset[:, :, None]
        ref_root = ((ref_q[..., :3] - root_pos[:, None]) @ root_mat)                       # [N, S, 3]
        ref_rel = ((ref_bodies - self._xpos[:, None, 2:]) @ root_mat[:, None]).reshape(n, s, -1)
        look = torch.cat([ref_root, rel_quat, dq, ref_rel], dim=-1).reshape(n, -1)
        return torch.cat([*parts, look], dim=-1)

    def _outputs(self, reward, terminated, truncated, diverged, e, sq, terms):
        """One device tensor of everything a step returns, copied to the host once, then split (``tensor_obs``:
        everything but the observations, which are returned as the device tensor)."""
        obs = self._observation()
        cols = [reward, terminated, truncated, diverged, e, self._clip, self._k, *(sq[k] for k in SQ_KEYS),
                *(terms[k] for k in TERM_KEYS)]
        small = torch.stack([c.to(torch.float32) for c in cols], dim=1)
        if self._tensor_obs:  # the observations stay on the device; reward, flags and infos go to the host
            obs_np, rest = obs, small.cpu().numpy().astype(np.float64)
        else:
            host = torch.cat([obs, small], dim=1).cpu().numpy()
            dim = obs.shape[1]
            obs_np, rest = np.ascontiguousarray(host[:, :dim]), host[:, dim:].astype(np.float64)
        info = {"termination_error": rest[:, 4], "clip_index": rest[:, 5].astype(np.int64),
                "frame": rest[:, 6].astype(np.int64), "diverged": rest[:, 3] > 0.5}
        info.update({f"error_{k}": rest[:, 7 + i] for i, k in enumerate(SQ_KEYS)})
        info.update({f"reward_{k}": rest[:, 7 + len(SQ_KEYS) + i] for i, k in enumerate(TERM_KEYS)})
        return obs_np, rest[:, 0], rest[:, 1] > 0.5, rest[:, 2] > 0.5, info

    # ---------------------------------------------------------------- gym vector API

    def _warp_scope(self):
        return warp_scope(self._wp, self._wp_device, self._stream)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """All worlds start anew: at random reference states (seeded by ``seed``), or at ``options["clip_index"]``
        / ``options["frame"]`` (one each per world, or one for all)."""
        if seed is not None:
            self._generator.manual_seed(int(seed))
        everyone = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        options = dict(options or {})
        if "clip_index" in options or "frame" in options:
            unknown = set(options) - {"clip_index", "frame"}
            if unknown or "frame" not in options:
                raise ValueError(f"reset options: give 'frame' (and optionally 'clip_index'), got {sorted(options)}")
            clip = torch.as_tensor(options.get("clip_index", 0), dtype=torch.long, device=self.device).expand(self.num_envs)
            frame = torch.as_tensor(options["frame"], dtype=torch.long, device=self.device).expand(self.num_envs)
            if ((clip < 0) | (clip >= len(self._frames))).any() or (frame < 0).any():
                raise ValueError("reset options: clip_index must index env.cpu_env.library.clips and frame be >= 0")
            self._clip[:], self._k[:], self._steps[:] = clip, frame, 0
        elif options:
            raise ValueError(f"unknown reset options {sorted(options)} (known: clip_index, frame)")
        else:
            self._draw_starts(everyone)
        self._autoreset[:] = False
        with self._warp_scope():
            self._set_reference_state(everyone)
            self._mjw.kinematics(self._model, self._data)
            self._mjw.com_pos(self._model, self._data)
            sq, e = self._errors()
            _, terms = self._reward(sq, e)
            zero = torch.zeros(self.num_envs, device=self.device)
            obs, _, _, _, info = self._outputs(zero, zero, zero, zero, e, sq, terms)
        return obs, info

    def step(self, actions):
        cpu = self.cpu_env
        action = torch.as_tensor(np.asarray(actions), dtype=torch.float32, device=self.device)
        if action.shape != (self.num_envs, self._ctrl.shape[1]):
            raise ValueError(f"actions of shape {tuple(action.shape)}, expected {(self.num_envs, self._ctrl.shape[1])}")
        action = action.clamp(-1.0, 1.0)
        resetting = self._autoreset.clone()
        with self._warp_scope():
            diverged = self._simulate(action) & ~resetting
            self._k += 1
            self._steps += 1
            self._draw_starts(resetting)
            self._set_reference_state(diverged | resetting)  # diverged: the reference state of their frame
            self._mjw.kinematics(self._model, self._data)    # positions of the final state
            self._mjw.com_pos(self._model, self._data)
            sq, e = self._errors()
            reward, terms = self._reward(sq, e)
            terminated = (diverged | (e > cpu.termination_error_threshold)) & ~resetting
            last = self._frames[self._clip] - 1 - int(self._ref_steps[-1])
            truncated = (self._steps >= cpu.max_episode_steps) | (~self._loop[self._clip] & (self._k >= last))
            truncated = truncated & ~terminated & ~resetting
            reward = torch.where(diverged | resetting, torch.zeros_like(reward), reward)
            self._autoreset = terminated | truncated
            return self._outputs(reward, terminated, truncated, diverged, e, sq, terms)

    def close_extras(self, **kwargs: Any) -> None:
        self.cpu_env.close()
