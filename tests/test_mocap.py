"""Motion library (rlkit.envs.mocap): loading, forward kinematics, interpolation, velocities, inverse dynamics, CLI."""

import json
import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import pytest

from rlkit.cli import main
from rlkit.errors import ConfigError
from rlkit.envs.mocap import (DEEPMIMIC_CLIPS, DEEPMIMIC_DIR, MotionClip, actuated_dofs, inverse_dynamics, load_clip,
                              load_model, quat_mul, quat_slerp, read_deepmimic)


@pytest.fixture(scope="module")
def model():
    return load_model()


def _quat_cols(clip):
    cols, adr = [], 0
    for kind in clip.joint_types:
        cols += [adr + 3] if kind == "free" else [adr] if kind == "ball" else []
        adr += {"free": 7, "ball": 4, "hinge": 1, "slide": 1}[kind]
    return cols


def test_all_clips_load_with_unit_quaternions(model):
    assert len(DEEPMIMIC_CLIPS) == 15
    raw = np.array(json.loads((DEEPMIMIC_DIR / "humanoid3d_kick.txt").read_text())["Frames"])
    assert np.abs(np.linalg.norm(raw[:, 16:20], axis=1) - 1).max() > 0.4  # right hip: far from unit in the file
    for name in DEEPMIMIC_CLIPS:
        clip = load_clip(name, model)
        assert clip.qpos.shape[1] == model.nq and clip.num_frames > 20 and 0.01 < clip.dt < 0.07
        for c in _quat_cols(clip):
            np.testing.assert_allclose(np.linalg.norm(clip.qpos[:, c:c + 4], axis=1), 1.0, atol=1e-12)
    assert load_clip("walk", model).loop and not load_clip("kick", model).loop
    loop, times, values = read_deepmimic(DEEPMIMIC_DIR / "humanoid3d_walk.txt")
    assert loop and times[0] == 0 and np.allclose(np.diff(times), 0.033332)


def _urdf_tree():
    """(joint name, parent joint, offset [m, Y-up], type) straight from the URDF, independent of the generator."""
    text = (DEEPMIMIC_DIR / "humanoid.urdf").read_bytes().rstrip(b"\0\n ").decode()
    joints, child_of = [], {}
    for j in ET.fromstring(text).findall("joint"):
        parent, child = j.find("parent").get("link"), j.find("child").get("link")
        child_of[child] = j.get("name")
        joints.append((j.get("name"), parent, child, 0.25 * np.array([float(v) for v in j.find("origin").get("xyz").split()]),
                       j.get("type")))
    return [(name, child_of.get(parent), child, off, kind) for name, parent, child, off, kind in joints]


def _rot(q):  # unit quaternion (w, x, y, z) -> matrix
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _numpy_fk(frame):
    """World positions of every URDF link (Y-up) from one raw DeepMimic frame: a quaternion chain."""
    layout = {"chest": 8, "neck": 12, "right_hip": 16, "right_knee": 20, "right_ankle": 21, "right_shoulder": 25,
              "right_elbow": 29, "left_hip": 30, "left_knee": 34, "left_ankle": 35, "left_shoulder": 39,
              "left_elbow": 43}
    pos, rot = {"root": frame[1:4]}, {"root": _rot(frame[4:8])}
    for name, parent, child, off, kind in _urdf_tree():
        if name == "root":
            continue
        p = parent or "root"
        if kind == "spherical":
            local = _rot(frame[layout[name]:layout[name] + 4])
        elif kind == "revolute":  # axis z in the URDF
            a = frame[layout[name]]
            local = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        else:
            local = np.eye(3)
        pos[name] = pos[p] + rot[p] @ off
        rot[name] = rot[p] @ local
    return pos


@pytest.mark.parametrize("name", ["walk", "cartwheel", "getup_faceup", "punch"])
def test_forward_kinematics_matches_numpy_chain(model, name):
    frames = np.array(json.loads((DEEPMIMIC_DIR / f"humanoid3d_{name}.txt").read_text())["Frames"])
    clip = load_clip(name, model)
    assert clip.num_frames == len(frames)
    data = mujoco.MjData(model)
    to_zup = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
    child_body = {name: child for name, _, child, _, _ in _urdf_tree()}
    worst = 0.0
    for k in range(0, len(frames), 3):
        data.qpos[:] = clip.qpos[k]
        mujoco.mj_kinematics(model, data)
        for joint, p in _numpy_fk(frames[k]).items():
            body = "root" if joint == "root" else child_body[joint]
            b = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body)
            worst = max(worst, np.abs(data.xpos[b] - to_zup @ p).max())
    assert worst < 1e-5


def test_slerp_and_interpolation(model):
    q0, q1 = np.array([1.0, 0, 0, 0]), np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])  # 0 and 90 deg about z
    np.testing.assert_allclose(quat_slerp(q0, q1, 0.5), [np.cos(np.pi / 8), 0, 0, np.sin(np.pi / 8)], atol=1e-12)
    np.testing.assert_allclose(quat_slerp(q0, -q1, 0.5), [np.cos(np.pi / 8), 0, 0, np.sin(np.pi / 8)], atol=1e-12)
    clip = load_clip("walk", model)
    for k in (0, 7, clip.num_frames - 2):  # frames are reproduced (a loop's time `duration` is the next cycle's 0)
        np.testing.assert_allclose(clip.sample(k * clip.dt), clip.qpos[k], atol=1e-12)
    mid = clip.sample(3.5 * clip.dt)
    np.testing.assert_allclose(mid[:3], 0.5 * (clip.qpos[3, :3] + clip.qpos[4, :3]), atol=1e-12)
    hinge = model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "right_knee")]
    np.testing.assert_allclose(mid[hinge], 0.5 * (clip.qpos[3, hinge] + clip.qpos[4, hinge]), atol=1e-12)
    chest = model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "chest")]
    np.testing.assert_allclose(mid[chest:chest + 4], quat_slerp(clip.qpos[3, chest:chest + 4],
                                                                clip.qpos[4, chest:chest + 4], 0.5), atol=1e-12)
    # looping: one period later the pose repeats and the root has moved by one cycle offset
    t = 5.3 * clip.dt
    later = clip.sample(t + 2 * clip.duration)
    expected = clip.sample(t)
    expected[:3] += 2 * clip.cycle_offset
    np.testing.assert_allclose(later, expected, atol=1e-9)
    assert clip.cycle_offset[0] > 1.0 and clip.cycle_offset[2] == 0.0  # walks ~1.24 m forward per cycle
    np.testing.assert_allclose(clip.frame(clip.num_frames - 1 + 2), clip.qpos[2] + np.r_[clip.cycle_offset, np.zeros(model.nq - 3)])
    # non-looping clips clamp
    kick = load_clip("kick", model)
    np.testing.assert_allclose(kick.sample(kick.duration), kick.qpos[-1], atol=1e-12)
    np.testing.assert_allclose(kick.sample(kick.duration + 1.0), kick.qpos[-1], atol=1e-12)
    np.testing.assert_allclose(kick.sample(-1.0), kick.qpos[0], atol=1e-12)


def _exp_quat(rotvec):
    angle = np.linalg.norm(rotvec)
    axis = rotvec / angle if angle > 0 else np.zeros(3)
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


def test_velocities_of_a_known_motion(model):
    """Constant world linear velocity, constant body-frame angular velocities: differences are exact."""
    names = tuple(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(model.njnt))
    types = tuple({0: "free", 1: "ball", 3: "hinge"}[int(t)] for t in model.jnt_type)
    dt, T = 0.05, 12
    v_lin, w_root, w_chest, w_knee = np.array([1.0, -0.5, 0.2]), np.array([0.3, -0.2, 1.1]), np.array([0.5, 0.4, -0.7]), -1.3
    q0 = np.array([0.9, 0.1, -0.2, 0.3]) / np.linalg.norm([0.9, 0.1, -0.2, 0.3])
    chest = model.jnt_qposadr[names.index("chest")]
    knee = model.jnt_qposadr[names.index("right_knee")]
    qpos = np.tile(model.qpos0, (T, 1))
    for k in range(T):
        t = k * dt
        qpos[k, :3] = [0, 0, 1] + v_lin * t
        qpos[k, 3:7] = quat_mul(q0, _exp_quat(w_root * t))
        qpos[k, chest:chest + 4] = _exp_quat(w_chest * t)
        qpos[k, knee] = -0.2 + w_knee * t
    clip = MotionClip("synthetic", qpos, dt, False, names, types)
    qvel = clip.velocities(model)
    nv_chest = model.jnt_dofadr[names.index("chest")]
    nv_knee = model.jnt_dofadr[names.index("right_knee")]
    for k in range(T):
        np.testing.assert_allclose(qvel[k, :3], v_lin, atol=1e-9)
        np.testing.assert_allclose(qvel[k, 3:6], w_root, atol=1e-9)
        np.testing.assert_allclose(qvel[k, nv_chest:nv_chest + 3], w_chest, atol=1e-9)
        np.testing.assert_allclose(qvel[k, nv_knee], w_knee, atol=1e-9)
    np.testing.assert_allclose(clip.accelerations(model)[1:-1], 0.0, atol=1e-7)


@pytest.mark.parametrize("name", ["walk", "crawl"])  # crawl: hands and knees in floor contact
def test_inverse_dynamics_reproduces_forward_dynamics(model, name):
    clip = load_clip(name, model).resample(1 / 30)
    inv = inverse_dynamics(clip, model)
    data = mujoco.MjData(model)
    checked_contacts = 0
    for row in range(len(inv["frames"])):
        data.qpos[:], data.qvel[:] = inv["qpos"][row], inv["qvel"][row]
        data.ctrl[:] = 0.0
        data.qfrc_applied[:] = inv["qfrc"][row]
        mujoco.mj_forward(model, data)
        checked_contacts += data.ncon > 0
        np.testing.assert_allclose(data.qacc, inv["qacc"][row], rtol=1e-6, atol=1e-6 * (1 + np.abs(inv["qacc"][row]).max()))
    if name == "crawl":
        assert checked_contacts > 0
    np.testing.assert_array_equal(inv["root_residual"], inv["qfrc"][:, :6])
    # without contacts, a standing / walking body needs about its weight on the root
    free = inverse_dynamics(load_clip("walk", model).resample(1 / 30), model, contacts=False)
    weight = model.body_subtreemass[1] * 9.81
    assert 0.8 * weight < np.median(np.linalg.norm(free["root_residual"][:, :3], axis=1)) < 1.3 * weight


def test_npz_round_trip_and_errors(model, tmp_path):
    clip = load_clip("run", model)
    path = clip.save_npz(tmp_path / "run.npz")
    back = load_clip(path, model)
    np.testing.assert_allclose(back.qpos, clip.qpos, rtol=0, atol=1e-15)  # quaternions re-normalised on load
    assert (back.dt, back.loop, back.name, back.joint_names) == (clip.dt, clip.loop, "run", clip.joint_names)
    with pytest.raises(ConfigError, match="did you mean 'walk'"):
        load_clip("wlak", model)
    with pytest.raises(ConfigError, match="does not exist"):
        load_clip(tmp_path / "missing.npz", model)


def test_cli_dataset_from_mocap(tmp_path, capsys, monkeypatch):
    from rlkit.experience.datasets import dataset_path, load_dataset

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    assert main(["dataset", "from-mocap", "--clips", "walk", "--out", "test/walk-v0"]) == 0
    printed = capsys.readouterr().out
    assert "walk" in printed and "root residual" in printed and "test/walk-v0" in printed
    data = load_dataset("test/walk-v0")  # a Minari dataset: one episode per clip
    assert len(data) == 1 and data.env_id == "rlkit/HumanoidImitation-v0"
    assert data.metadata["rlkit"]["env_kwargs"] == {"clips": ["walk"], "action_mode": "torque"}
    ep = data.episodes[0]
    n = len(ep)
    assert n == 37 and ep.actions.shape == (n, 28) and ep.observations.shape == (n + 1, 501)
    assert ep.observations.dtype == np.float32 and ep.infos["qpos"].shape == (n, 43)
    assert ep.infos["root_residual"].shape == (n, 6) and ep.truncations[-1] and not ep.terminations.any()
    gears = actuated_dofs(load_model())[1]
    np.testing.assert_allclose(ep.infos["actions_normalized"] * gears, ep.infos["actuator_forces"], rtol=1e-6)
    np.testing.assert_array_equal(ep.actions, np.clip(ep.infos["actions_normalized"], -1, 1).astype(np.float32))
    # the walk loops: the final observation is the reference state one cycle on, the first frame's pose
    np.testing.assert_allclose(ep.observations[-1][:10], ep.observations[0][:10], atol=1e-4)
    assert main(["dataset", "from-mocap", "--clips", "walk", "--out", "test/walk-v0"]) == 2  # exists
    assert "already exists" in capsys.readouterr().err
    assert main(["dataset", "from-mocap", "--clips", "wlak", "--out", "test/x-v0"]) == 2
    assert "did you mean 'walk'" in capsys.readouterr().err
    assert not dataset_path("test/x-v0").exists()


def _write_clip(path, **fields):
    with open(path, "wb") as f:
        np.savez(f, **fields)
    return path


@pytest.mark.parametrize("case", ["garbage", "truncated", "object", "nan", "inf", "zero_quat", "text_qpos",
                                  "array_dt", "nan_dt", "unknown_joint"])
def test_malformed_npz_clips_are_clear_errors(model, tmp_path, capsys, monkeypatch, case):
    """Bad clip files never run code (allow_pickle=False) and never yield NaN datasets: one clear error."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    clip = load_clip("walk", model)
    good = dict(qpos=clip.qpos, dt=np.float64(clip.dt), loop=np.bool_(True), joint_names=np.array(clip.joint_names),
                joint_types=np.array(clip.joint_types), name=np.array("walk"))
    path = tmp_path / f"{case}.npz"
    if case == "garbage":
        path.write_bytes(b"\x00\x01 definitely not a zip file" * 10)
    elif case == "truncated":
        _write_clip(path, **good)
        path.write_bytes(path.read_bytes()[:300])
    elif case == "object":
        with open(path, "wb") as f:
            np.savez(f, **{**good, "qpos": np.array([{"a": 1}, None], dtype=object)})
    elif case in ("nan", "inf", "zero_quat"):
        qpos = clip.qpos.copy()
        if case == "zero_quat":
            qpos[5, 3:7] = 0.0
        else:
            qpos[5, 9] = np.nan if case == "nan" else np.inf
        _write_clip(path, **{**good, "qpos": qpos})
    elif case == "text_qpos":
        _write_clip(path, **{**good, "qpos": np.array([["a"] * 43] * 3)})
    elif case == "array_dt":
        _write_clip(path, **{**good, "dt": np.array([0.1, 0.2])})
    elif case == "nan_dt":
        _write_clip(path, **{**good, "dt": np.float64(np.nan)})
    elif case == "unknown_joint":
        _write_clip(path, **{**good, "joint_types": np.array(["free"] + ["weird"] * (len(clip.joint_types) - 1))})
    with pytest.raises(ConfigError) as excinfo:
        load_clip(path, model)
    message = str(excinfo.value)
    # one line, naming the file (unreadable) or the clip read from it (bad contents), and what is wrong
    what = {"garbage": "not a readable .npz clip", "truncated": "not a readable .npz clip",
            "object": "not a readable .npz clip", "nan": "qpos holds 1 NaN or infinite values (first at frame 5",
            "inf": "qpos holds 1 NaN or infinite values (first at frame 5", "zero_quat": "a zero quaternion",
            "text_qpos": "'qpos' must hold numbers", "array_dt": "'dt' must be a scalar number",
            "nan_dt": "dt must be a finite number > 0, got nan", "unknown_joint": "unknown joint types ['weird'"}[case]
    assert "\n" not in message and what in message, message
    assert message.startswith(f"{path}: ") or message.startswith("clip 'walk': "), message
    assert main(["dataset", "from-mocap", "--clips", str(path), "--out", f"test/{case}-v0"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "minari" / "test" / f"{case}-v0").exists()


def test_deepmimic_text_clip_errors(model, tmp_path):
    bad_json = tmp_path / "bad.txt"
    bad_json.write_text("{not json")
    with pytest.raises(ConfigError, match="not a DeepMimic clip"):
        load_clip(bad_json, model)
    nan_frames = tmp_path / "nan.txt"
    frames = json.loads((DEEPMIMIC_DIR / "humanoid3d_walk.txt").read_text())
    frames["Frames"][3][5] = float("nan")
    nan_frames.write_text(json.dumps(frames))
    with pytest.raises(ConfigError, match="NaN"):
        load_clip(nan_frames, model)
