"""Declared parts: an agent's modules, free tensors, optimizers and random generators, named once.

d3rlpy's ``Modules`` dataclass is the model (``torch_utility.py``): an algorithm's networks and optimizers
are declared as one object, and save/load, freezing and device moves are written once over it. Here the
declaration also says each part's *role*:

- ``acting(module)``: what ``act`` needs — written by ``rlkit export``, loaded by ``rlkit.load``;
- ``trained(module)``: trained but not needed to act (critics, a subgoal policy);
- ``target_of(source, module)`` / ``momentum_of(source, module, tau)``: slow copies of another part (Polyak or
  hard-copied targets, an EMA key encoder); never trained by an optimizer, never wrapped in DDP. A momentum copy
  declared with ``tau`` is updated by shared code after every step of the optimizer that trains its source,
  ``copy <- tau * source + (1 - tau) * copy`` (MoCo's key encoder, He et al. 2020, eq. 2 with m = 1 - tau); an
  auxiliary module declares its own this way (:meth:`rlkit.contract.auxiliary.AuxModule.extra_parts`), so
  checkpoints, exact resume, device moves and DDP see it like any other part;
- ``free_tensor(tensor)``: a leaf tensor an optimizer trains outside any module (SAC's log alpha).

and which parts each optimizer trains (``trains(optimizer, "critic", ...)``), so an auxiliary loss attached
to ``critic.encoder`` knows which optimizer step it joins. Parts may be named with dots into a module
(``q_net.encoder``) wherever a part is named.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

Role = Literal["acts", "trains", "target", "momentum", "tensor", "aux"]


@dataclass(frozen=True)
class Part:
    value: nn.Module | torch.Tensor
    role: Role
    source: str | None = None  # the online part a target / momentum copy follows (dotted names allowed)
    tau: float | None = None   # a momentum copy updated after each step of its source's optimizer


def acting(module: nn.Module) -> Part:
    return Part(module, "acts")


def trained(module: nn.Module) -> Part:
    return Part(module, "trains")


def target_of(source: str, module: nn.Module) -> Part:
    """A target copy of ``source``; :meth:`Parts.check` requires it to hold no trainable parameters."""
    return Part(module, "target", source)


def momentum_of(source: str, module: nn.Module, tau: float | None = None) -> Part:
    """A momentum (EMA) copy of ``source`` (MoCo / CURL key encoders). With ``tau`` in (0, 1], shared code
    updates it after every step of the optimizer that trains ``source``: copy <- tau * source + (1 - tau) * copy;
    without, the agent updates it itself (:meth:`rlkit.contract.agent.Agent.update_target`)."""
    if tau is not None and not 0.0 < tau <= 1.0:
        raise DeclarationError(f"momentum_of('{source}'): tau must lie in (0, 1], got {tau}")
    return Part(module, "momentum", source, tau)


def free_tensor(tensor: torch.Tensor) -> Part:
    return Part(tensor, "tensor")


@dataclass(frozen=True)
class OptimizerSpec:
    optimizer: torch.optim.Optimizer
    trains: tuple[str, ...]


def trains(optimizer: torch.optim.Optimizer, *parts: str) -> OptimizerSpec:
    """Declare that ``optimizer`` trains the parameters of ``parts`` (and only those)."""
    return OptimizerSpec(optimizer, tuple(parts))


class DeclarationError(TypeError):
    """An agent's declaration does not match what it built (a programming error in the agent file)."""


class Parts:
    """The declaration, and everything written once over it (see :class:`rlkit.contract.agent.Agent`)."""

    def __init__(self, parts: dict[str, Part], optimizers: dict[str, OptimizerSpec],
                 generators: dict[str, np.random.Generator | torch.Generator], encoder: str | None,
                 encoder_inputs: Callable[[Any], Any] | None) -> None:
        self.modules = {n: p.value for n, p in parts.items() if isinstance(p.value, nn.Module)}
        self.tensors = {n: p.value for n, p in parts.items() if not isinstance(p.value, nn.Module)}
        self.roles = {n: p.role for n, p in parts.items()}
        self.sources = {n: p.source for n, p in parts.items() if p.source is not None}
        self.taus = {n: p.tau for n, p in parts.items() if p.tau is not None}
        self.optimizers = optimizers
        self.generators = generators
        self.encoder, self.encoder_inputs = encoder, encoder_inputs

    # ------------------------------------------------------------------ lookups
    def names(self) -> list[str]:
        return [n for n in self.roles if self.roles[n] != "aux"]

    def module_names(self) -> list[str]:
        return [n for n in self.modules if self.roles[n] != "aux"]

    def module_at(self, name: str) -> nn.Module:
        """The module named ``name`` (``critic`` or dotted, ``critic.encoder``), unwrapped."""
        if name in self.modules:  # a declared name that holds dots itself (an auxiliary module's parts)
            return self.modules[name]
        head, _, rest = name.partition(".")
        module = self.modules[head]
        return module.get_submodule(rest) if rest else module

    def has(self, name: str, _agent: Any = None) -> bool:
        try:
            self.module_at(name)
        except (KeyError, AttributeError):
            return False
        return True

    def optimizer_of(self, name: str) -> str | None:
        """The declared optimizer that trains part ``name`` (or the part it lies in)."""
        for opt_name, spec in self.optimizers.items():
            for trained_name in spec.trains:
                if name == trained_name or name.startswith(trained_name + "."):
                    return opt_name
        return None

    def optimizer_params(self, name: str) -> list[torch.Tensor]:
        return [p for group in self.optimizers[name].optimizer.param_groups for p in group["params"]]

    def trains_anything(self, name: str) -> bool:
        """Whether optimizer ``name`` has a parameter left that requires a gradient (not all frozen)."""
        return any(p.requires_grad for p in self.optimizer_params(name))

    @contextlib.contextmanager
    def no_weight_grads(self, name: str) -> Iterator[None]:
        """Inside, part ``name`` computes no weight gradients (a loss backpropagates *through* it, as SAC's
        policy loss through the critic); each parameter's own flag comes back after, so frozen parts stay frozen."""
        params = list(self.module_at(name).parameters())
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in zip(params, flags):
                p.requires_grad_(flag)

    def update_target(self, name: str, tau: float) -> None:
        """target <- tau * source + (1 - tau) * target on the unwrapped modules (``tau = 1``: a hard copy), so a
        DDP- or compile-wrapped source still matches its target's keys."""
        from rlkit.contract.networks import polyak_update

        polyak_update(self.module_at(self.sources[name]), self.modules[name], tau)

    def momentum_updates(self, optimizer: str) -> list[tuple[str, float]]:
        """``(copy, tau)`` of the momentum copies declared with a ``tau`` whose source ``optimizer`` trains."""
        return [(name, tau) for name, tau in self.taus.items() if self.optimizer_of(self.sources[name]) == optimizer]

    def acting_names(self) -> list[str]:
        return [n for n, role in self.roles.items() if role == "acts"]

    # ------------------------------------------------------------------ checks
    def check(self, agent: str, optimizer_settings: Mapping[str, tuple[tuple[str, str], ...]]) -> None:
        """The declaration matches what the agent built: raise :class:`DeclarationError` where not."""
        def fail(text: str) -> None:
            raise DeclarationError(f"{agent}.declare: {text}")

        if not self.acting_names():
            fail("no acting part (acting(module)): nothing to act with or export")
        for name, source in self.sources.items():
            if not self.has(source):
                fail(f"'{name}' is a copy of '{source}', which is not a declared module (or a dotted part of one)")
            if any(p.requires_grad for p in self.modules[name].parameters()):
                fail(f"'{name}' is a {self.roles[name]} copy but has trainable parameters (requires_grad_(False))")
        owner: dict[int, str] = {}
        for opt_name, spec in self.optimizers.items():
            declared = set()
            for name in spec.trains:
                if name in self.tensors:
                    declared.add(id(self.tensors[name]))
                elif self.has(name):
                    declared |= {id(p) for p in self.module_at(name).parameters()}
                else:
                    fail(f"optimizer '{opt_name}' trains '{name}', which is not a declared part")
            for p in self.optimizer_params(opt_name):
                if id(p) not in declared:
                    fail(f"optimizer '{opt_name}' holds a parameter of no part it declares ({', '.join(spec.trains)})")
                if id(p) in owner:
                    fail(f"a parameter is trained by both '{owner[id(p)]}' and '{opt_name}'")
                owner[id(p)] = opt_name
        for name, module in self.modules.items():
            if self.roles[name] in ("acts", "trains"):
                for pname, p in module.named_parameters():
                    if p.requires_grad and id(p) not in owner:
                        fail(f"'{name}.{pname}' is trainable but no optimizer declares it")
        for name in self.tensors:
            if id(self.tensors[name]) not in owner:
                fail(f"free tensor '{name}' is trained by no optimizer")
        for key, targets in optimizer_settings.items():
            for opt_name, _ in targets:
                if opt_name not in self.optimizers:
                    fail(f"optimizer_settings['{key}'] names optimizer '{opt_name}', which is not declared")
        if self.encoder is not None and not self.has(self.encoder):
            fail(f"encoder '{self.encoder}' is not a declared part (or a dotted part of one)")
        for name, gen in self.generators.items():
            if not isinstance(gen, (np.random.Generator, torch.Generator)):
                fail(f"generator '{name}' is a {type(gen).__name__}, not a numpy or torch generator")

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: module.state_dict() for name, module in self.modules.items()}
        state.update({name: t.detach().clone() for name, t in self.tensors.items()})
        state.update({name: spec.optimizer.state_dict() for name, spec in self.optimizers.items()})
        for name, gen in self.generators.items():
            state[name] = json.dumps(gen.bit_generator.state) if isinstance(gen, np.random.Generator) else gen.get_state()
        return state

    def load_state_dict(self, state: Mapping[str, Any], counters: tuple[str, ...] = ()) -> None:
        """Strict: every declared entry must be there and nothing else (a checkpoint with an auxiliary head
        this agent lacks is refused), except parameter-free modules, which older checkpoints may not list."""
        expected = {*self.modules, *self.tensors, *self.optimizers, *self.generators, *counters}
        unexpected = sorted(set(state) - expected)
        if unexpected:
            raise KeyError(f"entries this agent does not declare: {', '.join(unexpected)}")
        for name, module in self.modules.items():
            if name not in state and not module.state_dict():
                continue  # e.g. MPO's flattening encoder, declared after its checkpoints were written
            module.load_state_dict(state[name])
        with torch.no_grad():  # in place: the optimizers hold these very tensors
            for name, tensor in self.tensors.items():
                tensor.copy_(state[name])
        for name, spec in self.optimizers.items():
            spec.optimizer.load_state_dict(state[name])
            _check_optimizer_state(name, spec.optimizer)
        for name, gen in self.generators.items():
            if isinstance(gen, np.random.Generator):
                gen.bit_generator.state = json.loads(state[name])
            else:
                gen.set_state(state[name])

    def acting_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{key}": value.detach().cpu().contiguous()
                for name in self.acting_names() for key, value in self.modules[name].state_dict().items()}

    def load_acting_tensors(self, tensors: Mapping[str, torch.Tensor], device: torch.device) -> None:
        """Load ``{"<part>.<param>": tensor}`` into the acting parts; raises RuntimeError on any mismatch."""
        names = self.acting_names()
        stray = sorted({k.split(".", 1)[0] for k in tensors} - set(names))
        if stray:
            raise RuntimeError(f"tensors of parts this agent does not act with: {', '.join(stray)} "
                               f"(acting parts: {', '.join(names)})")
        for name in names:
            prefix = f"{name}."
            self.modules[name].load_state_dict({k[len(prefix):]: v.to(device) for k, v in tensors.items()
                                                if k.startswith(prefix)})

    # ------------------------------------------------------------------ devices, wrappers, aux
    def to(self, device: torch.device) -> None:
        for module in self.modules.values():
            module.to(device)
        with torch.no_grad():
            for tensor in self.tensors.values():
                tensor.data = tensor.data.to(device)  # same object: the optimizers keep holding it
        for spec in self.optimizers.values():
            # loading its own state moves every state tensor next to its parameter, with the optimizer's own
            # rule for the step counter (on the device for fused/capturable Adam, on the CPU otherwise)
            spec.optimizer.load_state_dict(spec.optimizer.state_dict())
        for name, gen in list(self.generators.items()):
            if isinstance(gen, torch.Generator) and not _same_device(gen.device, device):
                moved = torch.Generator(device=device)  # a generator's state cannot change device: reseed from it
                moved.manual_seed(int(torch.randint(0, 2**62, (), generator=gen, device=gen.device)))
                self.generators[name] = moved

    def wrap_trainable(self, wrap: Callable[[nn.Module], nn.Module]) -> dict[str, nn.Module]:
        return {name: wrap(module) for name, module in self.modules.items() if self.roles[name] in ("acts", "trains")}

    def add_aux(self, name: str, module: nn.Module, optimizer: str) -> None:  # noqa: D102
        """An auxiliary module's own parameters (its head) join ``optimizer`` as a new param group."""
        self.modules[name] = module
        self.roles[name] = "aux"
        params = [p for p in module.parameters() if p.requires_grad]
        if params:
            self.optimizers[optimizer].optimizer.add_param_group({"params": params})

    def add_aux_part(self, name: str, part: Part) -> None:
        """A part an auxiliary module declares beside its head (:meth:`AuxModule.extra_parts`): only momentum
        copies of a declared part, which hold no trainable parameters."""
        if part.role != "momentum" or not isinstance(part.value, nn.Module) or part.source is None:
            raise DeclarationError(f"auxiliary part '{name}': only momentum_of(source, module) copies may be added, "
                                   f"got a {part.role} part")
        if not self.has(part.source):
            raise DeclarationError(f"auxiliary part '{name}' copies '{part.source}', which is not a declared part")
        if any(p.requires_grad for p in part.value.parameters()):
            raise DeclarationError(f"auxiliary part '{name}' is a momentum copy but has trainable parameters")
        if name in self.roles:
            raise DeclarationError(f"auxiliary part '{name}' is declared twice")
        self.modules[name], self.roles[name], self.sources[name] = part.value, part.role, part.source
        if part.tau is not None:
            self.taus[name] = part.tau


def _check_optimizer_state(name: str, optimizer: torch.optim.Optimizer) -> None:
    """A loaded optimizer state fits its parameters: every parameter's state has the same entries (Adam's
    moments and step at least), each moment a finite float tensor of its parameter's shape, each step a finite
    count >= 0. torch itself checks none of this, and a wrong-shaped moment corrupts memory at the next step."""
    keys: set[str] | None = None
    for group in optimizer.param_groups:
        for key, default in optimizer.defaults.items():  # the hyperparameters: present, of the default's kind
            if not _same_kind(group.get(key, _MISSING), default):
                raise ValueError(f"optimizer '{name}' setting '{key}' is {group.get(key, 'missing')!r}")
        for param in group["params"]:
            entry = optimizer.state.get(param)
            if entry is not None and not isinstance(entry, dict):
                raise ValueError(f"optimizer '{name}' holds a {type(entry).__name__} as a parameter's state")
            if not entry:
                continue
            if keys is None:
                keys = set(entry)
            elif set(entry) != keys:
                raise ValueError(f"optimizer '{name}' holds different state entries for different parameters")
            for key, value in entry.items():
                if key == "step":
                    step = float(value) if isinstance(value, (torch.Tensor, int, float)) else float("nan")
                    if not (np.isfinite(step) and step >= 0):
                        raise ValueError(f"optimizer '{name}' step is {value!r}")
                elif not isinstance(value, torch.Tensor) or (
                        value.shape != param.shape or not value.is_floating_point()
                        or not bool(torch.isfinite(value).all())):
                    kind = (f"{value.dtype}, shape {tuple(value.shape)}" if isinstance(value, torch.Tensor)
                            else type(value).__name__)
                    raise ValueError(f"optimizer '{name}' state '{key}' ({kind}) does not fit its parameter "
                                     f"(shape {tuple(param.shape)}) or is not finite")
    if keys is not None and isinstance(optimizer, torch.optim.Adam) and not {"step", "exp_avg", "exp_avg_sq"} <= keys:
        raise ValueError(f"optimizer '{name}' state lacks Adam's step and moments (has {sorted(keys)})")


_MISSING = object()


def _same_kind(value: Any, default: Any) -> bool:
    """``value`` is what an optimizer setting like ``default`` may be: a bool for a bool, a finite number for
    a number, a tuple of finite numbers of the same length for a tuple (Adam's betas), anything for None."""
    if value is _MISSING:
        return False
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        if isinstance(value, torch.Tensor):  # a tensor learning rate (capturable optimizers): one finite number
            return value.numel() == 1 and bool(torch.isfinite(value).all())
        return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))
    if isinstance(default, tuple):
        return (isinstance(value, (tuple, list)) and len(value) == len(default)
                and all(_same_kind(v, d) for v, d in zip(value, default)))
    return isinstance(value, type(default))


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are the same device when one of them names no index."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)
