"""Generate ``envs/assets/humanoid_deepmimic.xml`` from the DeepMimic humanoid URDF.

    python scripts/make_humanoid_mjcf.py [--urdf envs/assets/mocap/deepmimic/humanoid.urdf]
                                         [--out envs/assets/humanoid_deepmimic.xml]

The URDF (vendored from pybullet_data, see envs/assets/mocap/deepmimic/LICENSE.txt) is the
skeleton of the DeepMimic humanoid3d motion clips. It is written at 4x scale and Y-up (x
forward, y up, z to the character's right); pybullet loads it with ``globalScaling=0.25``.
The MJCF written here:

* scales every length by 0.25 and rotates Y-up to Z-up with ``C = Rx(+90 deg)``:
  ``(x, y, z) -> (x, -z, y)`` (x forward, y left, z up). Every body frame is rotated the same
  way, so all body frames stay aligned with the world in the rest pose, exactly as in the URDF;
  a local rotation ``q`` of the clips becomes ``C q C^-1`` (see ``rlkit.envs.mocap``);
* turns the URDF ``base`` + fixed ``root`` joint into a body ``root`` with a free joint;
  ``spherical`` joints become ``ball`` joints, ``revolute`` ones ``hinge`` joints (axis
  ``C @ axis``; knees and elbows), ``fixed`` ones (wrists) bodies welded to their parent;
* keeps the URDF's masses, centres of mass and inertias (the URDF gives every link the
  placeholder inertia diag(0.1, 0.1, 0.1) kg m^2, which pybullet's DeepMimic also uses and which
  keeps 240 Hz PD control stable) and its collision shapes (spheres, capsules, boxes);
* disables self-collision (only body-floor contacts, as in pybullet's DeepMimic);
* adds one ``motor`` actuator per joint DOF (3 per ball joint, about the joint's local x, y, z
  axes; 1 per hinge) with ``ctrlrange [-1, 1]`` and ``gear`` = the DeepMimic torque limit, and
  stores DeepMimic's PD gains as ``<numeric name="pd_kp">`` / ``pd_kd`` (per actuator);
* adds sites ``right_hand``, ``left_hand`` (wrist centres), ``right_foot``, ``left_foot`` (foot
  box centres) and ``head`` (head sphere centre), a floor, a light and a tracking camera.

Hinge ranges (knee ``[-3.14, 0]``, elbow ``[0, 3.14]``) are written as ``range`` but the joints are
not ``limited``: several clips slightly hyper-extend the knees, and a limit would add constraint
forces to the inverse dynamics. The environment uses the ranges to map PD actions.
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_URDF = ROOT / "envs" / "assets" / "mocap" / "deepmimic" / "humanoid.urdf"
DEFAULT_OUT = ROOT / "envs" / "assets" / "humanoid_deepmimic.xml"

SCALE = 0.25
C = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # Y-up -> Z-up (Rx(+90 deg))

# DeepMimic humanoid3d controller constants (DeepMimic data/characters/humanoid3d.txt and pybullet's
# humanoid_stable_pd.py): PD gains kp [N m / rad], kd [N m s / rad] and torque limits [N m] per joint.
PD_GAINS = {
    "chest": (1000.0, 100.0, 200.0),
    "neck": (100.0, 10.0, 50.0),
    "hip": (500.0, 50.0, 200.0),
    "knee": (500.0, 50.0, 150.0),
    "ankle": (400.0, 40.0, 90.0),
    "shoulder": (400.0, 40.0, 100.0),
    "elbow": (300.0, 30.0, 60.0),
}


def _vec(text: str | None) -> np.ndarray:
    return np.zeros(3) if text is None else np.array([float(v) for v in text.split()])


def _fmt(v) -> str:
    return " ".join(f"{float(x):.6g}" for x in np.atleast_1d(v))


def _pos(v) -> np.ndarray:
    """A URDF position (4x scale, Y-up) in metres, Z-up."""
    return C @ (SCALE * np.asarray(v, dtype=float))


def parse_urdf(path: Path) -> tuple[dict, dict]:
    """Links and joints of the URDF (the file ends in a NUL byte, which XML parsers reject)."""
    text = path.read_bytes().rstrip(b"\0\n\r\t ").decode()
    robot = ET.fromstring(text)
    links = {}
    for link in robot.findall("link"):
        inertial = link.find("inertial")
        col = link.find("collision")
        geom = None
        if col is not None:
            shape = col.find("geometry")[0]
            geom = {"type": shape.tag, "attrib": dict(shape.attrib), "xyz": _vec(col.find("origin").get("xyz"))}
        links[link.get("name")] = {
            "mass": float(inertial.find("mass").get("value")),
            "com": _vec(inertial.find("origin").get("xyz")),
            "inertia": [float(inertial.find("inertia").get(k)) for k in ("ixx", "iyy", "izz")],
            "geom": geom,
        }
    joints = {}
    for joint in robot.findall("joint"):
        origin = joint.find("origin")
        if origin is not None and np.any(_vec(origin.get("rpy"))):
            raise ValueError(f"joint {joint.get('name')}: rotated joint frames are not supported")
        limit = joint.find("limit")
        joints[joint.get("name")] = {
            "type": joint.get("type"),
            "parent": joint.find("parent").get("link"),
            "child": joint.find("child").get("link"),
            "xyz": _vec(origin.get("xyz") if origin is not None else None),
            "axis": _vec(joint.find("axis").get("xyz")) if joint.find("axis") is not None else None,
            "range": (float(limit.get("lower")), float(limit.get("upper"))) if limit is not None else None,
        }
    return links, joints


def _gains(joint_name: str) -> tuple[float, float, float]:
    return PD_GAINS[joint_name.split("_")[-1]]


def build_mjcf(links: dict, joints: dict) -> str:
    by_parent: dict[str, list[str]] = {}
    for name, j in joints.items():
        by_parent.setdefault(j["parent"], []).append(name)

    actuators: list[tuple[str, str, str, float, float, float]] = []  # (name, joint, gear axis, kp, kd, limit)
    lines: list[str] = []

    def geom_lines(link_name: str, indent: str) -> list[str]:
        link, g = links[link_name], links[link_name]["geom"]
        out = [f'{indent}<inertial pos="{_fmt(_pos(link["com"]))}" mass="{link["mass"]:.6g}" '
               f'diaginertia="{_fmt(link["inertia"])}"/>']
        if g is None:
            return out
        c = _pos(g["xyz"])
        if g["type"] == "sphere":
            r = SCALE * float(g["attrib"]["radius"])
            out.append(f'{indent}<geom name="{link_name}" type="sphere" size="{r:.6g}" pos="{_fmt(c)}"/>')
        elif g["type"] == "capsule":  # URDF capsule: axis along (rotated) y, i.e. along the limb = new z
            r, half = SCALE * float(g["attrib"]["radius"]), SCALE * float(g["attrib"]["length"]) / 2
            a, b = c + [0, 0, half], c - [0, 0, half]
            out.append(f'{indent}<geom name="{link_name}" type="capsule" size="{r:.6g}" '
                       f'fromto="{_fmt(a)} {_fmt(b)}"/>')
        elif g["type"] == "box":
            size = SCALE * np.abs(C @ _vec(g["attrib"]["size"])) / 2
            out.append(f'{indent}<geom name="{link_name}" type="box" size="{_fmt(size)}" pos="{_fmt(c)}"/>')
        else:
            raise ValueError(f"link {link_name}: unsupported geometry {g['type']}")
        return out

    def body(joint_name: str, depth: int) -> None:
        j = joints[joint_name]
        child, ind = j["child"], "  " * depth
        pos = _pos(j["xyz"])
        lines.append(f'{ind}<body name="{child}" pos="{_fmt(pos)}">')
        if j["type"] == "spherical":
            lines.append(f'{ind}  <joint name="{joint_name}" type="ball"/>')
            kp, kd, lim = _gains(joint_name)
            actuators.extend((f"{joint_name}_{ax}", joint_name, gear, kp, kd, lim)
                             for ax, gear in (("x", "1 0 0"), ("y", "0 1 0"), ("z", "0 0 1")))
        elif j["type"] == "revolute":
            axis = C @ j["axis"]
            lo, hi = j["range"]
            lines.append(f'{ind}  <joint name="{joint_name}" type="hinge" axis="{_fmt(axis)}" '
                         f'range="{lo:.6g} {hi:.6g}" limited="false"/>')
            kp, kd, lim = _gains(joint_name)
            actuators.append((joint_name, joint_name, "1", kp, kd, lim))
        elif j["type"] != "fixed":
            raise ValueError(f"joint {joint_name}: unsupported type {j['type']}")
        lines.extend(geom_lines(child, ind + "  "))
        g = links[child]["geom"]
        if child.endswith("wrist"):
            lines.append(f'{ind}  <site name="{child.split("_")[0]}_hand" size="0.02"/>')
        elif child.endswith("ankle"):
            lines.append(f'{ind}  <site name="{child.split("_")[0]}_foot" size="0.02" pos="{_fmt(_pos(g["xyz"]))}"/>')
        elif child == "neck":
            lines.append(f'{ind}  <site name="head" size="0.02" pos="{_fmt(_pos(g["xyz"]))}"/>')
        for name in by_parent.get(child, []):
            body(name, depth + 1)
        lines.append(f"{ind}</body>")

    # base --(fixed "root")--> root: the root link becomes the free-floating body
    lines.append('    <body name="root" pos="0 0 1" childclass="body">')
    lines.append('      <freejoint name="root"/>')
    lines.append('      <camera name="track" mode="trackcom" pos="0 -4 0.5" xyaxes="1 0 0 0 0.12 1"/>')
    lines.extend(geom_lines("root", "      "))
    for name in by_parent.get("root", []):
        body(name, 3)
    lines.append("    </body>")

    act_lines = []
    for n, j, gear, kp, kd, lim in actuators:
        g = " ".join(str(lim * float(x)) for x in gear.split())
        act_lines.append(f'    <motor name="{n}" joint="{j}" gear="{g}"/>')
    kp = " ".join(f"{a[3]:g}" for a in actuators)
    kd = " ".join(f"{a[4]:g}" for a in actuators)
    body_text = "\n".join(lines)
    return f"""<!-- Generated by scripts/make_humanoid_mjcf.py from envs/assets/mocap/deepmimic/humanoid.urdf
     (pybullet_data, zlib licence, see envs/assets/mocap/deepmimic/LICENSE.txt). Do not edit by hand:
     altered from the original (MJCF, x0.25 scale, Y-up -> Z-up, actuators, sites). -->
<mujoco model="humanoid_deepmimic">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="0.0041667" integrator="Euler"/>
  <size nuser_body="0"/>
  <visual>
    <global offwidth="640" offheight="480"/>
    <quality shadowsize="2048"/>
  </visual>
  <custom>
    <numeric name="pd_kp" data="{kp}"/>
    <numeric name="pd_kd" data="{kd}"/>
  </custom>
  <default>
    <motor ctrlrange="-1 1" ctrllimited="true"/>
    <default class="body">
      <geom contype="1" conaffinity="2" friction="0.9 0.005 0.0001" rgba="0.75 0.6 0.45 1"/>
      <site rgba="0.9 0.2 0.2 1" group="3"/>
    </default>
  </default>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.2 0.3 0.4" rgb2="0.1 0.15 0.2" width="512" height="512"/>
    <material name="grid" texture="grid" texrepeat="1 1" texuniform="true" reflectance="0.1"/>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.4 0.6 0.8" rgb2="0 0 0" width="256" height="256"/>
  </asset>
  <worldbody>
    <light name="sun" pos="0 0 6" dir="0 0 -1" directional="true" diffuse="0.8 0.8 0.8"/>
    <geom name="floor" type="plane" size="0 0 0.05" material="grid" contype="2" conaffinity="1" friction="0.9 0.005 0.0001"/>
{body_text}
  </worldbody>
  <actuator>
{chr(10).join(act_lines)}
  </actuator>
</mujoco>
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urdf", type=Path, default=DEFAULT_URDF)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ns = parser.parse_args(argv)
    links, joints = parse_urdf(ns.urdf)
    xml = build_mjcf(links, joints)
    import mujoco

    model = mujoco.MjModel.from_xml_string(xml)  # fail here, not at import time of the env
    ns.out.write_text(xml)
    print(f"wrote {ns.out}: {model.nbody - 1} bodies, {model.njnt} joints, nq={model.nq}, nv={model.nv}, "
          f"nu={model.nu}, mass {model.body_subtreemass[1]:.2f} kg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
