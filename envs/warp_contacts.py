"""MuJoCo's tangent frame for plane-capsule contacts on mujoco-warp, shared by the warp backends.

MuJoCo's ``mjc_PlaneCapsule`` aligns the first tangent of both contacts of a capsule on a plane with the capsule's
axis projected on the plane, whatever the capsule's tilt. mujoco-warp 4.0 (``collision_primitive_core.plane_capsule``)
does so only while that projection is at least 0.5 long, i.e. for capsules less than 60 degrees from the plane, and
otherwise takes the world's y axis (or z). The normal and the contact points are the same; what changes is the
orientation of the friction directions around the normal. With an elliptic cone that does not matter (the cone is
round); with a pyramidal cone (MuJoCo's default, used by Ant-v5 and the DeepMimic humanoid) the pyramid's edges
follow the tangents, so the two engines push a steep capsule with different friction forces: the Ant's feet gave
qvel 0.3 apart after one substep from the same state (envs/ant_warp.py), the DeepMimic humanoid's 0.22 where a
shin or an upper arm stands on its end (rare there; envs/humanoid_warp.py, scripts/warp_humanoid_contacts.py).

:class:`CapsuleFrameFilter` is a mujoco-warp ``callback.contactfilter`` (called after every collision pass, RK4
stages included, before constraints are built) that rewrites the frame of every plane-capsule contact as MuJoCo's,
in torch on zero-copy views of warp's contact arrays (rows past ``nacon`` left alone; on a GPU without a host sync,
on warp's CPU device only the ``nacon`` live rows are touched)::

    CapsuleFrameFilter(mj_model, warp_model, warp_data).install()   # sets warp_model.callback.contactfilter

Other geom pairs are left as mujoco-warp makes them: the humanoid's plane-sphere and plane-box contacts (hands,
head, feet) match MuJoCo to float32 rounding without a filter (scripts/warp_humanoid_contacts.py).
"""

from __future__ import annotations

from typing import Any

import torch


class CapsuleFrameFilter:
    """MuJoCo's plane-capsule contact frames on a mujoco-warp ``Data`` (module docstring); call it as ``(m, d)``."""

    def __init__(self, mj_model: Any, warp_model: Any, warp_data: Any):
        import mujoco
        import warp as wp

        view = wp.to_torch  # zero-copy views; the filter writes the frames in place
        d = warp_data
        self.warp_model = warp_model
        self._frame, self._geom = view(d.contact.frame), view(d.contact.geom)
        self._world, self._nacon, self._geom_xmat = view(d.contact.worldid), view(d.nacon), view(d.geom_xmat)
        self._nworld = int(d.nworld)
        dev = self._frame.device
        self._rows = torch.arange(self._frame.shape[0], device=dev)
        self._host = dev.type == "cpu"
        types = torch.as_tensor(mj_model.geom_type, device=dev)
        self._is_plane = types == int(mujoco.mjtGeom.mjGEOM_PLANE)
        self._is_capsule = types == int(mujoco.mjtGeom.mjGEOM_CAPSULE)
        self.active = bool(self._is_plane.any() and self._is_capsule.any())
        """False when the model has no plane or no capsule: nothing to rewrite, :meth:`install` sets nothing."""

    def install(self) -> "CapsuleFrameFilter":
        """Set this filter as the warp model's ``callback.contactfilter`` (when the model has plane-capsule pairs)."""
        if self.active:
            self.warp_model.callback.contactfilter = self
        return self

    def __call__(self, m: Any = None, d: Any = None) -> None:
        # on the CPU device nacon is read without a sync, and only the live rows are rewritten (8.7 -> 0.4 ms per
        # call at 1,024 humanoid worlds); on a GPU all naconmax rows are masked instead of syncing on nacon
        rows = min(int(self._nacon[0]), len(self._rows)) if self._host else len(self._rows)
        if rows == 0:
            return
        frame, geom = self._frame[:rows], self._geom[:rows].long().clamp(0, len(self._is_plane) - 1)  # stale: any id
        plane_first = self._is_plane[geom[:, 0]] & self._is_capsule[geom[:, 1]]
        capsule_first = self._is_capsule[geom[:, 0]] & self._is_plane[geom[:, 1]]
        capsule = torch.where(plane_first, geom[:, 1], geom[:, 0])
        world = self._world[:rows].long().clamp(0, self._nworld - 1)
        axis = self._geom_xmat[world, capsule][:, :, 2]                                   # [C, 3]: the capsule's z
        normal = frame[:, 0]
        tangent = axis - normal * (normal * axis).sum(-1, keepdim=True)
        length = tangent.norm(dim=-1, keepdim=True)
        use = (plane_first | capsule_first) & (self._rows[:rows] < self._nacon[0]) & (length[:, 0] > 1e-15)
        tangent = tangent / length.clamp_min(1e-15)
        aligned = torch.stack([normal, tangent, torch.linalg.cross(normal, tangent)], dim=1)
        frame.copy_(torch.where(use[:, None, None], aligned, frame))
