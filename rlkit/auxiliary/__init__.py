"""Auxiliary losses attached to any agent's parts by config (``agent.aux: [{name: ..., weight: ...}]``).

``AUX_MODULES`` maps the config name to the module's config dataclass (which names its module class).
Adding a module: one file here (an :class:`~rlkit.contract.auxiliary.AuxConfig` subclass and an
:class:`~rlkit.contract.auxiliary.AuxModule` subclass) and one line below. docs/design.md has the recipe.
"""

from rlkit.auxiliary.clapp import CLAPP, CLAPPConfig
from rlkit.auxiliary.cpc import CPC, CPCConfig
from rlkit.auxiliary.curl import CURL, CURLConfig
from rlkit.auxiliary.inverse_dynamics import InverseDynamics, InverseDynamicsConfig
from rlkit.auxiliary.mean_teacher import MeanTeacher, MeanTeacherConfig
from rlkit.contract.auxiliary import AuxConfig, AuxModule

AUX_MODULES: dict[str, type[AuxConfig]] = {
    "inverse_dynamics": InverseDynamicsConfig,
    "curl": CURLConfig,
    "cpc": CPCConfig,
    "clapp": CLAPPConfig,
    "mean_teacher": MeanTeacherConfig,
}

__all__ = ["AUX_MODULES", "AuxConfig", "AuxModule", "CLAPP", "CLAPPConfig", "CPC", "CPCConfig", "CURL", "CURLConfig",
           "InverseDynamics", "InverseDynamicsConfig", "MeanTeacher", "MeanTeacherConfig"]
