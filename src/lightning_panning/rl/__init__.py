"""RLPanning: the Panning Gymnasium environment, the TD3 agent and the shipped policy (METHOD §5).

Importing this package registers :class:`PanningEnv` with Gymnasium as ``"lightning_panning/Panning-v0"``::

    import gymnasium as gym
    import lightning_panning.rl  # noqa: F401

    env = gym.make("lightning_panning/Panning-v0", data_dir="/path/to/mnist/root")
"""

import gymnasium as gym

from lightning_panning.rl.env import ENV_ID, PanningEnv, curriculum_target, load_mnist
from lightning_panning.rl.episode import Episode, EpisodeStep
from lightning_panning.rl.state import (
    OBSERVATION_NAMES,
    LossNormalizer,
    RewardTerms,
    action_to_weights,
    observation_vector,
    reward_terms,
)

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="lightning_panning.rl.env:PanningEnv")

__all__ = [
    "ENV_ID",
    "OBSERVATION_NAMES",
    "Episode",
    "EpisodeStep",
    "LossNormalizer",
    "PanningEnv",
    "RewardTerms",
    "action_to_weights",
    "curriculum_target",
    "load_mnist",
    "observation_vector",
    "reward_terms",
]
