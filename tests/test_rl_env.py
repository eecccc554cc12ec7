"""PanningEnv: env checkers, reproducibility, eq. (7) by hand, both presets, passes per step, the vector env."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import lightning_panning.rl as rl
from lightning_panning.core.masks import effective_masks
from lightning_panning.rl import PanningEnv
from lightning_panning.rl.state import LossNormalizer, action_to_weights, observation_vector, reward_terms

pytestmark = pytest.mark.usefixtures("one_thread")


def small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, 3)
    )


def small_data(n_per_class: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(3 * n_per_class, 1, 8, 8, generator=g), torch.arange(3).repeat(n_per_class)


def make_env(**kwargs) -> PanningEnv:
    kwargs.setdefault("rounds", 5)
    kwargs.setdefault("per_class", 4)
    return PanningEnv(small_net, small_data(), **kwargs)


def test_gymnasium_env_checker():
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error", category=UserWarning)  # any checker warning is a failure
        check_env(make_env(), skip_render_check=True)


def test_sb3_env_checker():
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error", category=UserWarning)
        check_env(make_env(), warn=True)


def test_spaces():
    env = make_env()
    assert env.observation_space == gym.spaces.Box(0.0, 1.0, (7,), np.float32)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    assert make_env(scorers=("synflow", "snip")).action_space.shape == (2,)


def rollout(env: PanningEnv, seed: int, actions: np.ndarray) -> list:
    obs, info = env.reset(seed=seed)
    out = [obs, info["target"], info["loss"]]
    for a in actions:
        obs, reward, terminated, _truncated, info = env.step(a)
        out += [obs, reward, terminated, info["keep"], info["effective_sparsity"]]
        if terminated:
            break
    return out


def test_reset_seed_is_reproducible():
    actions = np.random.default_rng(1).uniform(-1, 1, size=(5, 3)).astype(np.float32)
    env_a, env_b = make_env(), make_env()
    first = rollout(env_a, 7, actions)
    rollout(env_a, 3, actions)  # another episode in between must not matter
    again = rollout(env_a, 7, actions)
    other_instance = rollout(env_b, 7, actions)
    for x, y, z in zip(first, again, other_instance, strict=True):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
    different = rollout(make_env(), 8, actions)
    assert different[1] != first[1]  # another seed draws another target


def test_reward_is_equation_7_by_hand():
    """Recompute every term of eq. (7) independently from the session's own state after one step."""
    env = make_env(rounds=4)
    _obs0, info0 = env.reset(seed=0, options={"target": 0.9})
    session = env.episode.session
    dense_loss, dense_g = info0["loss"], info0["grad_norm"]
    # independent dense loss, gᵀg and ‖g ⊙ w‖₂ with plain autograd on the same batch (loss in float64)
    model = env.model
    x, y = session.batch
    model.train()
    params = dict(session.params)
    loss = nn.functional.cross_entropy(model(x).double() / 200.0, y)
    grads = torch.autograd.grad(loss, list(params.values()))
    assert math.isclose(float(loss.detach()), dense_loss, rel_tol=1e-9)
    assert math.isclose(sum(float((g.double() ** 2).sum()) for g in grads), dense_g, rel_tol=1e-4)
    scale = math.sqrt(sum(float(((g.double() * p.detach().double()) ** 2).sum())
                          for g, p in zip(grads, params.values(), strict=True)))
    assert info0["loss_scale"] == pytest.approx(scale, rel=1e-4)

    action = np.array([0.2, -0.6, 1.0], dtype=np.float32)
    obs, reward, terminated, truncated, info = env.step(action)
    assert info["weights"] == pytest.approx({"synflow": 0.6, "snip": 0.2, "grasp": 1.0})
    masks = session.masks
    # sparse loss/grad norm at c ⊙ w, by hand
    with torch.no_grad():
        saved = {n: p.detach().clone() for n, p in params.items()}
        for n, p in params.items():
            p.mul_(masks[n])
    try:
        sparse_loss = nn.functional.cross_entropy(model(x).double() / 200.0, y)
        sparse_grads = torch.autograd.grad(sparse_loss, list(params.values()))
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(saved[n])
    sparse_g = sum(float((g.double() ** 2).sum()) for g in sparse_grads)
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    rho_t = 1.0 - (1.0 - 0.9) ** (1 / 4)
    assert math.isclose(1.0 - kept / total, rho_t, abs_tol=1.0 / total)
    assert info["sparsity"] == pytest.approx(rho_t)
    eff_kept = sum(int(e.sum()) for e in effective_masks(model, masks, x).values())
    rho_e = 1.0 - eff_kept / total
    n = lambda v, ref: v / (v + ref)  # noqa: E731 - the documented relative normalisation of gᵀg
    n_ls = 0.5 + (float(sparse_loss.detach()) - dense_loss) / scale  # the "sensitivity" normalisation of the loss
    expected_r1 = abs(0.5 - n_ls)
    expected = -expected_r1 - abs(0.5 - n(sparse_g, dense_g)) - 100.0 * abs(rho_e - rho_t) - 0.0
    assert info["r1"] == pytest.approx(expected_r1, rel=1e-3) and info["r1"] > 1e-3  # the loss term carries signal
    assert reward == pytest.approx(expected, rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(obs, [0.5, 0.5, n_ls, n(sparse_g, dense_g), rho_t, rho_e, 0.25], rtol=1e-4)
    assert not terminated and not truncated


def test_reward_terms_formula():
    terms = reward_terms(0.5, 0.5, 0.4, 0.1, 0.95, 0.96, dead=False, t=3, rounds=10, alpha=100.0)
    assert terms.r1 == pytest.approx(0.1) and terms.r2 == pytest.approx(0.4) and terms.r3 == pytest.approx(1.0)
    assert terms.reward == pytest.approx(-1.5)
    dead = reward_terms(0.5, 0.5, 0.5, 0.0, 0.95, 1.0, dead=True, t=3, rounds=10, grad_term_scale=0.2)
    assert dead.r_done == 7.0 and dead.r2 == pytest.approx(0.1)
    assert dead.reward == pytest.approx(-(0.0 + 0.1 + 5.0 + 7.0))
    authors = reward_terms(0.5, 0.5, 0.5, 0.0, 0.95, 1.0, dead=True, t=3, rounds=10, done_offset=1)
    assert authors.r_done == 8.0  # their T − t + 1


def test_action_mapping_and_fallback():
    assert action_to_weights(np.array([-1, 0, 1]), ["a", "b", "c"]) == {"a": 0.0, "b": 0.5, "c": 1.0}
    assert action_to_weights(np.array([-1, -1, -1]), ["a", "b", "c"]) == pytest.approx(
        {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    )
    assert action_to_weights(np.array([5.0, -7.0]), ["a", "b"]) == {"a": 1.0, "b": 0.0}  # clipped to [-1, 1]
    with pytest.raises(ValueError, match="3 scorers"):
        action_to_weights([0.0], ["a", "b", "c"])


def test_early_termination_on_a_dead_network():
    """A 2-hidden-unit bottleneck dies long before the last round at a 0.99 target: r_done = T - t, episode ends."""

    def bottleneck() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 2), nn.ReLU(), nn.Linear(2, 3))

    env = PanningEnv(bottleneck, small_data(), rounds=20, per_class=4)
    env.reset(seed=0, options={"target": 1 - 1 / 134})  # keep exactly one weight: no input-output path
    steps, info, reward, terminated = 0, {}, 0.0, False
    while not terminated:
        _, reward, terminated, _truncated, info = env.step(np.zeros(3, dtype=np.float32))
        steps += 1
    assert info["dead"] and info["effective_sparsity"] == 1.0
    assert steps < 20
    assert info["r_done"] == 20 - steps
    assert reward <= -(20 - steps)
    with pytest.raises(RuntimeError, match="ended"):
        env.step(np.zeros(3, dtype=np.float32))


def test_runs_to_t_equals_T():
    env = make_env(rounds=3, target=0.5)
    env.reset(seed=0)
    done = [env.step(np.zeros(3, dtype=np.float32))[2] for _ in range(3)]
    assert done == [False, False, True]


def test_curriculum_and_targets():
    rng = np.random.default_rng(0)
    early = [rl.curriculum_target(rng, steps=0) for _ in range(400)]
    late = [rl.curriculum_target(rng, steps=20_000) for _ in range(400)]
    assert min(early) >= 0.8 and max(early) <= 0.9999 and min(early) < 0.85
    assert min(late) >= 0.9 and np.mean(np.array(late) > 0.98) > 0.4
    env = make_env()
    _, info = env.reset(seed=0, options={"target": 0.75})
    assert info["target"] == 0.75
    assert make_env(target=0.6).reset(seed=0)[1]["target"] == 0.6


def test_registered_with_gymnasium():
    assert rl.ENV_ID == "lightning_panning/Panning-v0" and rl.ENV_ID in gym.registry
    env = gym.make(rl.ENV_ID, model_fn=small_net, data=small_data(), rounds=2, per_class=4)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (7,) and obs.dtype == np.float32
    env.close()


def test_gym_make_after_importing_the_package_alone():
    """`import lightning_panning` registers the env; `lightning_panning.rl` is imported only by gym.make itself."""
    code = (
        "import sys, gymnasium as gym, torch, lightning_panning\n"
        "assert 'lightning_panning.rl' not in sys.modules\n"
        "net = lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))\n"
        "data = (torch.randn(30, 1, 4, 4), torch.arange(3).repeat(10))\n"
        "env = gym.make('lightning_panning/Panning-v0', model_fn=net, data=data, rounds=2, per_class=4)\n"
        "print(env.reset(seed=0)[0].shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(7,)"


def test_default_lenet5_mnist(datasets_root):
    env = PanningEnv(data_dir=datasets_root, rounds=100)
    obs, info = env.reset(seed=0, options={"target": 0.99})
    assert info["total"] == 430_500 and env.episode.session.batch[0].shape == (100, 1, 28, 28)
    obs, reward, *_ = env.step(np.zeros(3, dtype=np.float32))
    assert np.isfinite(reward) and obs[-1] == pytest.approx(0.01)


def test_missing_mnist_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_dir"):
        PanningEnv(data_dir=tmp_path)


def test_normalizer_and_observation_helpers():
    n = LossNormalizer()
    n.reset(2.0, 4.0, loss_scale=0.01)
    assert n("loss", 2.0) == 0.5 and n("loss", 2.002) == pytest.approx(0.7) and n("loss", 1.999) == pytest.approx(0.4)
    assert n("grad_norm", 0.0) == 0.0 and n("grad_norm", 12.0) == 0.75
    with pytest.raises(ValueError, match="loss_scale"):
        LossNormalizer().reset(2.0, 4.0)
    relative = LossNormalizer("relative")
    relative.reset(2.0, 4.0)
    assert relative("loss", 2.0) == 0.5 and relative("loss", 6.0) == 0.75
    running = LossNormalizer("running")
    running.seed_bounds([5.0, 1.0, 3.0], [1.0, 2.0, 4.0])  # the authors' swapped init: the first value never counts
    assert running.bounds == {"loss": [1.0, 3.0], "grad_norm": [2.0, 4.0]}
    assert running.pair("loss", 2.0, 5.0) == (0.25, 1.0) and running.bounds["loss"] == [1.0, 5.0]
    obs = observation_vector(0.5, 0.5, float("nan"), 2.0, 0.9, 0.9, 1.0)
    assert obs.dtype == np.float32 and obs[2] == 0.0 and obs[3] == 1.0
    with pytest.raises(ValueError, match="normalization"):
        LossNormalizer("minmax")  # type: ignore[arg-type]


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`preset` 'paper'.*allowed: \['authors', 'default'\]"):
        make_env(preset="paper")
    with pytest.raises(ValueError, match="normalization"):
        make_env(loss_normalization="gap")
    with pytest.raises(ValueError, match="rounds"):
        make_env(rounds=0)
    with pytest.raises(ValueError, match="per_class"):
        PanningEnv(small_net, small_data(2), per_class=3)
    with pytest.raises(TypeError, match="data"):
        PanningEnv(small_net, "mnist")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="reset"):
        make_env().step(np.zeros(3, dtype=np.float32))


# -- the loss term, passes per step, the authors' preset ------------------------------------------------------------
def test_unmasked_scores_report_the_sparse_networks_own_loss():
    """masked_data_scores=False scores the unmasked network, but L_s and gᵀg are the sparse network's (r1, r2 > 0)."""
    env = make_env(rounds=4, panning_kwargs={"masked_data_scores": False})
    _, info0 = env.reset(seed=0, options={"target": 0.95})
    for _ in range(4):
        _, _, _, _, info = env.step(np.zeros(3, dtype=np.float32))
        assert info["sparse_loss"] != info0["loss"] and info["sparse_grad_norm"] != info0["grad_norm"]
        assert info["r1"] > 0 and info["r2"] > 0
    session = env.episode.session
    assert info["sparse_loss"] == pytest.approx(rl.episode.masked_loss(session)[0], rel=1e-12)


def count_passes(monkeypatch) -> list[tuple[bool, bool, bool]]:
    """Record (masked network?, with the double backward?, batch id) of every gradient pass of the scoring code."""
    from lightning_panning.core.scorers import ScoringContext

    calls: list = []
    original = ScoringContext._compute_gradients

    def counted(self):
        calls.append((self.masked_data_scores and self.masks is not None, bool(self.needs_hvp), id(self.batch)))
        return original(self)

    monkeypatch.setattr(ScoringContext, "_compute_gradients", counted)
    return calls


@pytest.mark.parametrize(
    ("preset", "kwargs", "per_step"),
    [
        ("default", {}, [(True, True)]),  # the next round's context gives L_s: one pass per step
        ("default", {"panning_kwargs": {"masked_data_scores": False}}, [(True, False)]),  # + unmasked once per batch
        ("authors", {}, [(True, False), (False, True)]),  # new batch: its unmasked context + the sparse L_s
    ],
)
def test_no_wasted_passes(monkeypatch, preset, kwargs, per_step):
    env = make_env(rounds=4, preset=preset, **kwargs)
    env.reset(seed=0, options={"target": 0.9})
    calls = count_passes(monkeypatch)
    for t in range(1, 5):
        before = len(calls)
        env.step(np.zeros(3, dtype=np.float32))
        step_calls = [c[:2] for c in calls[before:]]
        expected = [(m, hvp and t < 4) for m, hvp in per_step]  # no double backward once no round follows
        assert sorted(step_calls) == sorted(expected), (t, step_calls)
    if preset == "authors":
        batches = {c[2] for c in calls if not c[0]}
        assert len(batches) == 4  # a new batch every step


def test_authors_preset_is_their_pruning_env(monkeypatch):
    env = make_env(rounds=5, preset="authors")
    assert env.preset.done_offset == 1 and env.preset.grad_term_scale == 0.2
    assert env.pruner.masked_data_scores is False and env.pruner.normalization == "authors"
    assert env.pruner.selector.name == "authors" and env.pruner.scorers["synflow"].signed  # the core's panning_authors
    obs, info = env.reset(seed=0, options={"target": 0.9})
    np.testing.assert_array_equal(obs[2:], 0.0)  # their reset state (N(L), N(ΔL), 0, 0, 0, 0, 0)
    lo, hi = env.normalizer.bounds["loss"]
    assert obs[0] == pytest.approx((info["loss"] - lo) / (hi - lo), rel=1e-5)  # seeded bounds, not updated at reset
    model = env.model
    weights = [p.detach().clone() for p in model.parameters()]
    for t in range(1, 6):
        obs, reward, terminated, _, info = env.step(np.full(3, 0.3, dtype=np.float32))
        lo, hi = env.normalizer.bounds["loss"]
        assert lo <= min(info["loss"], info["sparse_loss"]) and hi >= max(info["loss"], info["sparse_loss"])
        assert info["r1"] == pytest.approx(abs(info["sparse_loss"] - info["loss"]) / (hi - lo), rel=1e-6)
        glo, ghi = env.normalizer.bounds["grad_norm"]
        assert info["r2"] == pytest.approx(abs(info["sparse_grad_norm"] - info["grad_norm"]) / (ghi - glo) / 5, rel=1e-6)
        np.testing.assert_allclose(obs, [(info["loss"] - lo) / (hi - lo), (info["grad_norm"] - glo) / (ghi - glo),
                                         info["r1"], info["r2"], info["effective_sparsity"], info["sparsity"],
                                         (t - 1) / 5], rtol=1e-5, atol=1e-7)
        assert reward == pytest.approx(-(info["r1"] + info["r2"] + info["r3"]), rel=1e-6)
    assert terminated
    bounds = dict(env.normalizer.bounds)
    env.reset(seed=1)
    assert env.model is model and all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))
    assert env.normalizer.bounds == bounds  # carried across episodes


def test_authors_done_penalty_is_T_minus_t_plus_1():
    def bottleneck() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 2), nn.ReLU(), nn.Linear(2, 3))

    env = PanningEnv(bottleneck, small_data(), rounds=20, per_class=4, preset="authors")
    env.reset(seed=0, options={"target": 1 - 1 / 134})
    steps, info, terminated = 0, {}, False
    while not terminated:
        _, _, terminated, _, info = env.step(np.zeros(3, dtype=np.float32))
        steps += 1
    assert info["dead"] and steps < 20 and info["r_done"] == 20 - steps + 1


# -- the vectorised env ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs", [{}, {"preset": "authors"}, {"panning_kwargs": {"masked_data_scores": False}}],
    ids=["default", "authors", "unmasked-scores"],
)
def test_vec_env_matches_single_envs(kwargs):
    """Slot i of make_vec_env(n, seed=s) plays the episodes of PanningEnv reset with seed s + i (one batched pass)."""
    n, kw = 3, {"rounds": 5, "per_class": 4, **kwargs}
    venv = rl.make_vec_env(n, small_net, small_data(), seed=10, **kw)
    singles = [make_env(**kw) for _ in range(n)]
    np.testing.assert_array_equal(venv.reset(), np.stack([e.reset(seed=10 + i)[0] for i, e in enumerate(singles)]))
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(12):
        actions = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
        obs, rewards, dones, infos = venv.step(actions)
        for i, env in enumerate(singles):
            o, r, terminated, _, info = env.step(actions[i])
            assert dones[i] == terminated and infos[i]["keep"] == info["keep"]
            assert rewards[i] == pytest.approx(r, rel=1e-4, abs=1e-6)
            for key in ("r1", "r2", "r3", "r_done", "effective_sparsity", "sparse_loss", "sparse_grad_norm"):
                assert infos[i][key] == pytest.approx(info[key], rel=1e-4, abs=1e-9), key
            if terminated:
                finished += 1
                np.testing.assert_allclose(infos[i]["terminal_observation"], o, atol=1e-5)
                o, _ = env.reset()
            np.testing.assert_allclose(obs[i], o, atol=1e-5)
    assert finished >= n  # every slot went through an automatic reset


def test_vec_env_is_one_batched_pass_per_step(monkeypatch):
    venv = rl.make_vec_env(4, small_net, small_data(), seed=0, rounds=5, per_class=4)
    venv.reset()
    calls = count_passes(monkeypatch)
    venv.step(np.zeros((4, 3), dtype=np.float32))
    assert [c[:2] for c in calls] == [(True, True)]


def test_vec_env_bad_n_envs():
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match=r"`n_envs` must be a positive integer"):
            rl.make_vec_env(bad, small_net, small_data())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_vec_env_on_cuda_matches_cpu():
    kw = {"rounds": 4, "per_class": 4, "target": 0.9}
    cpu, gpu = (rl.make_vec_env(3, small_net, small_data(), seed=0, device=d, **kw) for d in ("cpu", "cuda"))
    np.testing.assert_allclose(cpu.reset(), gpu.reset(), atol=1e-5)
    for _ in range(4):
        actions = np.random.default_rng(0).uniform(-1, 1, (3, 3)).astype(np.float32)
        (o1, r1, d1, i1), (o2, r2, d2, i2) = cpu.step(actions), gpu.step(actions)
        np.testing.assert_allclose(o1, o2, atol=1e-4)
        np.testing.assert_allclose(r1, r2, rtol=1e-3, atol=1e-5)
        assert [i["keep"] for i in i1] == [i["keep"] for i in i2] and list(d1) == list(d2)


def test_vec_env_refuses_micro_batch_clearly():
    with pytest.raises(ValueError, match=r"`micro_batch`=4 is not supported there"):
        rl.make_vec_env(2, small_net, small_data(), seed=0, rounds=3, per_class=4, panning_kwargs={"micro_batch": 4})
