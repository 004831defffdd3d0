"""rlkit.agents: one file per agent.

``AGENTS`` maps the name used in configs (``agent: {name: dqn}``) to (ConfigClass, AgentClass).
An agent class is built as ``AgentClass(cfg, observation_space, action_space, device, seed)``.
"""

from rlkit.agents.bc import BC, BCConfig
from rlkit.agents.decision_transformer import DecisionTransformer, DecisionTransformerConfig
from rlkit.agents.dqn import DQN, DQNConfig
from rlkit.agents.mpo import MPO, MPOConfig
from rlkit.agents.npmp import NPMP, NPMPConfig
from rlkit.agents.ris import RIS, RISConfig
from rlkit.agents.sac import SAC, SACConfig

AGENTS: dict[str, tuple[type, type]] = {
    "bc": (BCConfig, BC),
    "decision_transformer": (DecisionTransformerConfig, DecisionTransformer),
    "dqn": (DQNConfig, DQN),
    "mpo": (MPOConfig, MPO),
    "npmp": (NPMPConfig, NPMP),
    "ris": (RISConfig, RIS),
    "sac": (SACConfig, SAC),
}

__all__ = ["AGENTS", "BC", "BCConfig", "DecisionTransformer", "DecisionTransformerConfig", "DQN", "DQNConfig", "MPO", "MPOConfig", "NPMP", "NPMPConfig", "RIS", "RISConfig", "SAC", "SACConfig"]
