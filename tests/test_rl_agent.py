"""TD3 agent: Table 4 hyperparameters, a short training run that saves, loads and resumes; rl_prune; the CLI."""

from __future__ import annotations

import hashlib
import json
import zipfile

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
    policy_fingerprint,
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


@pytest.mark.parametrize("n_envs", [1, 2])
def test_train_cli_trains_checkpoints_resumes_and_exports(tmp_path, monkeypatch, n_envs):
    """`python -m lightning_panning.rl.train` on a tiny env: checkpoints, resume from the last, export + provenance."""
    import lightning_panning.rl.train as train

    monkeypatch.setattr(train, "_env_kwargs", _tiny_env_kwargs)
    out = tmp_path / "run"
    common = ["--out", str(out), "--rounds", "4", "--learning-starts", "20", "--checkpoint-every", "40",
              "--no-progress", "--n-envs", str(n_envs), "--eval-episodes", "1"]
    assert train.main(["--total-steps", "40", "--no-export", *common]) == 0
    ckpt = out / "checkpoints" / "td3_40_steps.zip"
    assert ckpt.is_file() and (out / "checkpoints" / "td3_replay_buffer_40_steps.pkl").is_file()
    assert train.last_checkpoint(out) == ckpt
    assert train.main(["--total-steps", "80", "--resume", "last", *common]) == 0
    state = json.loads((out / "train_state.json").read_text())
    assert state["steps"] == 80 and len(state["runs"]) == 2 and state["wall_seconds"] > 0
    assert state["runs"][1]["resumed_from"] == str(ckpt) and state["n_envs"] == n_envs
    assert len(train._read_monitor(out / "monitor.csv")) >= 18  # the resumed run appended its episodes
    # reaching --total-steps evaluated the agent and wrote the policy with its provenance
    record = json.loads((out / "export" / "default.json").read_text())
    assert record["steps"] == 80 and "fewer steps" in record["note"] and record["seed"] == 0
    assert record["env"]["preset"]["loss_normalization"] == "sensitivity"
    assert np.isfinite(record["evaluation"]["final_evaluation_reward"])
    assert np.isfinite(record["evaluation"]["table3_baseline_reward"])
    assert record["training_curve"]["episodes"] > 0 and (out / "export" / "reward_curve.png").is_file()
    # provenance without machine paths: placeholders for absolute paths, the zip's hash, the code's commits
    assert record["train_commands"][0].startswith("python -m lightning_panning.rl.train --total-steps 40 --no-export --out <out> ")
    assert str(tmp_path) not in json.dumps(record)
    assert record["zip_sha256"] == hashlib.sha256((out / "export" / "default.zip").read_bytes()).hexdigest()
    assert record["weights_sha256"] == policy_fingerprint(out / "export" / "default.zip")
    with zipfile.ZipFile(out / "export" / "default.zip") as archive:  # no directory of this machine in the zip
        assert json.loads(archive.read("data"))["tensorboard_log"] is None
        assert str(tmp_path) not in archive.read("data").decode()
    assert len(record["code_commits"]) == 1 and len(record["code_commits"][0]["segments_started"]) == 2
    policy = load_policy(out / "export" / "default.zip")
    assert policy.panning_preset["name"] == "default"


def test_train_resumes_with_another_number_of_envs(tmp_path, monkeypatch):
    """A CPU run with one env continued with two (e.g. on a GPU): the replay buffer is regrouped, nothing is lost."""
    from stable_baselines3 import TD3

    import lightning_panning.rl.train as train

    monkeypatch.setattr(train, "_env_kwargs", _tiny_env_kwargs)
    out = tmp_path / "run"
    common = ["--out", str(out), "--rounds", "4", "--learning-starts", "20", "--checkpoint-every", "40",
              "--no-progress", "--no-export"]
    assert train.main(["--total-steps", "40", "--n-envs", "1", *common]) == 0
    old = TD3.load(out / "checkpoints" / "td3_40_steps.zip")
    old.load_replay_buffer(out / "checkpoints" / "td3_replay_buffer_40_steps.pkl")
    assert old.replay_buffer.n_envs == 1 and old.replay_buffer.size() == 40
    old_rewards = old.replay_buffer.rewards[:40, 0].copy()
    assert train.main(["--total-steps", "60", "--n-envs", "2", "--resume", "last", *common]) == 0
    new = TD3.load(out / "final.zip")
    new.load_replay_buffer(out / "final_replay_buffer.pkl")
    assert new.num_timesteps == 60 and new.gradient_steps == -1  # one gradient step per transition
    buffer = new.replay_buffer
    # capacity 40 transitions (the first run's total) = 20 rows of 2: the 40 old ones filled it, then the 20 new
    # ones (10 rows) overwrote the oldest 20; the newest 20 old transitions are still there, in order
    assert buffer.n_envs == 2 and buffer.buffer_size == 20 and buffer.full and buffer.pos == 10
    np.testing.assert_array_equal(buffer.rewards[10:20].reshape(-1), old_rewards[20:40])


def test_regroup_replay_buffer_errors():
    from gymnasium import spaces
    from stable_baselines3.common.buffers import ReplayBuffer

    import lightning_panning.rl.train as train

    box = spaces.Box(-1, 1, (2,), np.float32)
    with pytest.raises(ValueError, match="`n_envs` must be a positive integer, got 0"):
        train.regroup_replay_buffer(ReplayBuffer(10, box, box, "cpu"), 0)
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        train.regroup_replay_buffer(
            ReplayBuffer(10, box, box, "cpu", optimize_memory_usage=True, handle_timeout_termination=False), 2
        )
    with pytest.raises(TypeError, match="SB3 ReplayBuffer"):
        train.regroup_replay_buffer([], 2)


def _tiny_env_kwargs(args):
    return {"model_fn": tiny_net, "data": tiny_data(), "rounds": args.rounds, "per_class": 4,
            "grad_term_scale": args.grad_term_scale, "preset": args.preset}


def test_td3_trains_on_the_vec_env():
    from lightning_panning.rl import make_vec_env

    venv = make_vec_env(3, tiny_net, tiny_data(), seed=0, rounds=4, per_class=4)
    model = make_td3(venv, seed=0, learning_starts=30, batch_size=16, buffer_size=300, gradient_steps=-1)
    model.learn(total_timesteps=90)
    assert model.num_timesteps == 90 and model.replay_buffer.size() * 3 >= 90
    assert model.predict(np.full((3, 7), 0.5, dtype=np.float32), deterministic=True)[0].shape == (3, 3)


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
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="could not be loaded"):
        load_policy(tmp_path / "junk.zip")


def wrong_shape_policy(tmp_path, obs_dim: int, n_actions: int):
    """A TD3 zip trained on some other task: observations (obs_dim,), actions (n_actions,)."""
    import gymnasium as gym

    class Other(gym.Env):
        observation_space = gym.spaces.Box(0, 1, (obs_dim,), np.float32)
        action_space = gym.spaces.Box(-1, 1, (n_actions,), np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return np.zeros(obs_dim, np.float32), {}

        def step(self, action):
            return np.zeros(obs_dim, np.float32), 0.0, True, False, {}

    path = tmp_path / f"other_{obs_dim}_{n_actions}.zip"
    make_td3(Other(), seed=0).save(path)
    return path


@pytest.mark.parametrize(("obs_dim", "n_actions"), [(5, 3), (7, 2)])
def test_policy_of_the_wrong_shape_is_refused(tmp_path, obs_dim, n_actions):
    from lightning_panning.callbacks import RLPanningCallback

    path = wrong_shape_policy(tmp_path, obs_dim, n_actions)
    message = rf"`policy`=.*expects observations of shape \({obs_dim},\) and actions of shape \({n_actions},\)"
    with pytest.raises(ValueError, match=message):
        load_policy(path)
    with pytest.raises(ValueError, match=message):
        RLPanningCallback(target=0.9, policy=str(path))
    with pytest.raises(ValueError, match=message):
        rl_prune(tiny_net(), tiny_data(), 0.9, policy=path, rounds=2)


def test_policy_carries_its_preset_and_rl_prune_uses_it(tmp_path):
    from lightning_panning.rl.agent import policy_preset
    from lightning_panning.rl.state import LEGACY_PRESET, PRESETS

    env = PanningEnv(tiny_net, tiny_data(), rounds=4, per_class=4, preset="authors")
    model = make_td3(env, seed=0)
    model.panning_preset = env.preset.to_dict()
    model.save(tmp_path / "authors.zip")
    loaded = load_policy(tmp_path / "authors.zip")
    assert policy_preset(loaded) == PRESETS["authors"]
    result = rl_prune(tiny_net(), tiny_data(), 0.9, policy=loaded, rounds=3)
    assert result.steps[0]["r_done"] == 0 and len(result.steps) == 3
    first_obs = []
    rl_prune(tiny_net(), tiny_data(), 0.9, policy=_Recorder(first_obs), rounds=3, preset="authors")
    np.testing.assert_array_equal(first_obs[0][2:], 0.0)  # the authors' reset observation
    assert policy_preset(make_td3(tiny_env())) == LEGACY_PRESET  # a TD3 without a stored preset: the v0.1 policy
    assert policy_preset(FixedActionPolicy(0.9, 4)) == PRESETS["default"]


class _Recorder:
    def __init__(self, seen: list) -> None:
        self.seen = seen

    def predict(self, obs, deterministic=True):
        self.seen.append(np.array(obs))
        return np.zeros(3, dtype=np.float32), None


def test_default_policy_ships_and_loads():
    path = default_policy_path()
    assert path.stat().st_size < 5_000_000
    record = json.loads(path.with_name("default.json").read_text())
    assert record["steps"] > 0 and "final_evaluation_reward" in record["evaluation"]
    assert record["zip_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["weights_sha256"] == policy_fingerprint(path)
    with zipfile.ZipFile(path) as archive:  # the shipped zip names no directory of the machine it was trained on
        assert json.loads(archive.read("data"))["tensorboard_log"] is None
        for name in archive.namelist():
            text = archive.read(name).decode("latin-1")
            assert "/work/" not in text and "/root/" not in text and "/home/" not in text, name
    action, _ = load_policy("default").predict(np.full(7, 0.5, dtype=np.float32), deterministic=True)
    assert action.shape == (3,) and np.all(np.abs(action) <= 1.0)


def test_agent_progress_pairs_checkpoints_with_table3_on_the_same_episodes(tmp_path, monkeypatch):
    """`benchmarks/agent_progress.py`: each checkpoint and Table 3 play the same (target, seed) episodes."""
    import lightning_panning.rl.train as train
    from benchmarks import agent_progress

    monkeypatch.setattr(train, "_env_kwargs", _tiny_env_kwargs)
    run = tmp_path / "run"
    assert train.main(["--out", str(run), "--rounds", "4", "--learning-starts", "20", "--checkpoint-every", "20",
                       "--no-progress", "--total-steps", "40", "--no-export"]) == 0
    common = ["--run-dir", str(run), "--rounds", "4", "--per-class", "4", "--targets", "0.9", "0.99",
              "--episodes", "2", "--out", str(tmp_path / "out")]
    record = agent_progress.main(["--steps", "20", "40", *common])
    assert [row["steps"] for row in record["checkpoints"]] == [20, 40]
    assert sorted((e["target"], e["seed"]) for e in record["table3"]) == [(0.9, 10000), (0.9, 10001),
                                                                          (0.99, 10000), (0.99, 10001)]
    for row in record["checkpoints"]:
        for target in ("0.9", "0.99"):
            cell = row["per_target"][target]
            assert cell["episodes"] == 2 and 0 <= cell["wins"] <= 2
            assert cell["mean"] == pytest.approx(cell["agent"] - cell["table3"])
    # Table 3 is deterministic given the episode: its rewards do not depend on which checkpoint is evaluated
    again = agent_progress.main(["--steps", "40", *common])
    assert [e["reward"] for e in again["table3"]] == [e["reward"] for e in record["table3"]]
    md = (tmp_path / "out" / "agent_progress.md").read_text()
    assert "| 40 |" in md and "target 0.99" in md
    with pytest.raises(SystemExit, match="--steps 30"):
        agent_progress.main(["--steps", "30", *common])


def test_policy_fingerprint_names_the_weights_not_the_zip(tmp_path):
    shipped = default_policy_path()
    with zipfile.ZipFile(shipped) as archive:
        members = [(info, archive.read(info.filename)) for info in archive.infolist()]

    def write(name, change):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as archive:
            for info, data in members:
                archive.writestr(info, change(info.filename, data))
        return path

    relabelled = write("relabelled.zip", lambda n, d: d.replace(b'"tensorboard_log": null', b'"tensorboard_log": "/x/tb"')
                       if n == "data" else d)
    assert hashlib.sha256(relabelled.read_bytes()).digest() != hashlib.sha256(shipped.read_bytes()).digest()
    assert policy_fingerprint(relabelled) == policy_fingerprint(shipped)  # metadata is not identity
    retrained = write("retrained.zip", lambda n, d: d[:-1] + bytes([d[-1] ^ 1]) if n == "policy.pth" else d)
    assert policy_fingerprint(retrained) != policy_fingerprint(shipped)  # weights are
    plain = tmp_path / "policy.bin"
    plain.write_bytes(b"not a zip")
    assert policy_fingerprint(plain) == hashlib.sha256(b"not a zip").hexdigest()
    with pytest.raises(FileNotFoundError, match="missing.zip"):
        policy_fingerprint(tmp_path / "missing.zip")
