"""Auxiliary losses attached to any agent's parts by config (``agent.aux: [{name: ..., weight: ...}]``).

``AUX_MODULES`` maps the config name to the module's config dataclass (which names its module class).
Adding a module: one file here (an :class:`~rlkit.contract.auxiliary.AuxConfig` subclass and an
:class:`~rlkit.contract.auxiliary.AuxModule` subclass) and one line below. docs/design.md has the recipe.
"""

from rlkit.auxiliary.inverse_dynamics import InverseDynamics, InverseDynamicsConfig
from rlkit.contract.auxiliary import AuxConfig, AuxModule

AUX_MODULES: dict[str, type[AuxConfig]] = {
    "inverse_dynamics": InverseDynamicsConfig,
}

__all__ = ["AUX_MODULES", "AuxConfig", "AuxModule", "InverseDynamics", "InverseDynamicsConfig"]
