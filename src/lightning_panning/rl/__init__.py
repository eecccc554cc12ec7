"""RLPanning: the Panning Gymnasium environment, the TD3 agent and the shipped policy (METHOD §5).

``import lightning_panning`` registers :class:`PanningEnv` with Gymnasium as ``"lightning_panning/Panning-v0"``::

    import gymnasium as gym
    import lightning_panning  # noqa: F401

    env = gym.make("lightning_panning/Panning-v0", data_dir="/path/to/mnist/root")
    vec = lightning_panning.rl.make_vec_env(16, data_dir="/path/to/mnist/root")  # 16 episodes, batched
"""

from lightning_panning.rl.agent import PolicyWeights, rl_prune
from lightning_panning.rl.env import ENV_ID, ActionWeights, PanningEnv, curriculum_target, load_mnist
from lightning_panning.rl.episode import Episode, EpisodeStep, Measurement
from lightning_panning.rl.state import (
    OBSERVATION_LAYOUTS,
    OBSERVATION_NAMES,
    PRESETS,
    LossNormalizer,
    PanningPreset,
    RewardTerms,
    action_to_weights,
    get_preset,
    observation_vector,
    reward_terms,
)
from lightning_panning.rl.vec_env import PanningVecEnv, make_vec_env

__all__ = [
    "ENV_ID",
    "OBSERVATION_LAYOUTS",
    "OBSERVATION_NAMES",
    "PRESETS",
    "ActionWeights",
    "Episode",
    "EpisodeStep",
    "LossNormalizer",
    "Measurement",
    "PanningEnv",
    "PanningPreset",
    "PanningVecEnv",
    "PolicyWeights",
    "RewardTerms",
    "action_to_weights",
    "curriculum_target",
    "get_preset",
    "load_mnist",
    "make_vec_env",
    "observation_vector",
    "reward_terms",
    "rl_prune",
]
