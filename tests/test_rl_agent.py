"""TD3 agent: Table 4 hyperparameters, a short training run that saves, loads and resumes; rl_prune; the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from lightning_panning.rl import PanningEnv
from lightning_panning.rl.agent import (
    TD3_HYPERPARAMETERS,
    FixedActionPolicy,
    default_policy_path,
    load_policy,
    make_td3,
    rl_prune,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 3))  # 1216 weights


def tiny_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(60, 1, 4, 4, generator=g), torch.arange(3).repeat(20)


def tiny_env() -> PanningEnv:
    return PanningEnv(tiny_net, tiny_data(), rounds=4, per_class=4)


def test_table4_hyperparameters():
    model = make_td3(tiny_env(), seed=0)
    assert model.learning_rate == 3e-4 and model.learning_starts == 2000 and model.batch_size == 256
    assert model.gamma == 0.99 and model.tau == 0.01 and model.target_policy_noise == 0.2
    assert model.target_noise_clip == 0.5 and model.policy_delay == 2
    assert np.allclose(model.action_noise._sigma, 0.1)
    linears = [m for m in model.actor.mu if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [256, 256, 3]
    assert any(isinstance(m, nn.Tanh) for m in model.actor.mu)
    assert set(TD3_HYPERPARAMETERS) >= {"learning_rate", "batch_size", "tau", "target_policy_noise"}


def test_short_td3_run_saves_loads_and_resumes(tmp_path):
    from stable_baselines3 import TD3

    model = make_td3(tiny_env(), seed=0, learning_starts=40, batch_size=32, buffer_size=1000)
    model.learn(total_timesteps=120)
    assert model.num_timesteps == 120
    model.save(tmp_path / "agent.zip")
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    loaded = TD3.load(tmp_path / "agent.zip", env=tiny_env())
    obs = np.full(7, 0.5, dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    assert loaded.replay_buffer.size() == 120
    loaded.learn(total_timesteps=40, reset_num_timesteps=False)
    assert loaded.num_timesteps == 160
    policy = load_policy(tmp_path / "agent.zip")
    assert policy.predict(obs, deterministic=True)[0].shape == (3,)


def test_train_cli_trains_checkpoints_resumes_and_exports(tmp_path, monkeypatch):
    """`python -m lightning_panning.rl.train` on a patched tiny env: checkpoints, resume, export + provenance."""
    import lightning_panning.rl.train as train

    monkeypatch.setattr(train, "make_env", _tiny_make_env(train))
    out, export = tmp_path / "run", tmp_path / "policies"
    common = ["--out", str(out), "--rounds", "4", "--learning-starts", "20", "--checkpoint-every", "40",
              "--no-progress"]
    assert train.main(["--total-steps", "40", *common]) == 0
    ckpt = out / "checkpoints" / "td3_40_steps.zip"
    assert ckpt.is_file() and (out / "checkpoints" / "td3_replay_buffer_40_steps.pkl").is_file()
    assert train.main(["--total-steps", "80", "--resume", str(ckpt), *common]) == 0
    state = json.loads((out / "train_state.json").read_text())
    assert state["steps"] == 80 and len(state["runs"]) == 2 and state["wall_seconds"] > 0
    assert train.main(["--export-default", str(out / "final.zip"), "--export-dir", str(export),
                       "--eval-episodes", "1", *common]) == 0
    record = json.loads((export / "default.json").read_text())
    assert record["steps"] == 80 and "fewer steps" in record["note"]
    assert np.isfinite(record["evaluation"]["final_evaluation_reward"])
    assert (export / "default.zip").stat().st_size < 5_000_000 and (export / "reward_curve.png").is_file()


def _tiny_make_env(train):
    def make_env(args, monitor=None, n_envs=1):
        env = tiny_env()
        if monitor is not None:
            from stable_baselines3.common.monitor import Monitor

            env = Monitor(env, monitor, override_existing=False)
        return env

    return make_env


def test_rl_prune_exact_keep_count_with_any_policy():
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    batch = (torch.randn(40, 8), torch.arange(4).repeat(10))
    result = rl_prune(net, batch, target=0.9, policy=FixedActionPolicy(0.9, 5), rounds=5)
    assert sum(int(m.sum()) for m in result.masks.values()) == 19  # floor(192 * 0.1 + 1e-6)
    assert len(result.steps) == 5 and {"a1", "a2", "a3", "reward", "remaining"} <= set(result.steps[0])
    assert result.steps[0]["p_snip"] == pytest.approx(0.5)  # Table 3's first row, via a = 2p - 1
    from lightning_panning import Panning

    with pytest.raises(ValueError, match=r"ready `pruner` and Panning arguments \['rounds'\], which it would ignore"):
        rl_prune(net, batch, target=0.9, policy=FixedActionPolicy(0.9, 5), pruner=Panning(rounds=5), rounds=3)


def test_load_policy_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither 'default' nor an existing file"):
        load_policy(tmp_path / "missing.zip")
    with pytest.raises(TypeError, match="predict"):
        load_policy(42)  # type: ignore[arg-type]


def test_default_policy_ships_and_loads():
    path = default_policy_path()
    assert path.stat().st_size < 5_000_000
    record = json.loads(path.with_name("default.json").read_text())
    assert record["steps"] > 0 and "final_evaluation_reward" in record["evaluation"]
    action, _ = load_policy("default").predict(np.full(7, 0.5, dtype=np.float32), deterministic=True)
    assert action.shape == (3,) and np.all(np.abs(action) <= 1.0)
