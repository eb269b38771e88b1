"""MAML's meta-gradient against finite differences, and its loss inputs against hand values."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.linear_baseline import baseline_features, fit_predict
from agents.maml_objective import (
    TaskBatch,
    adapt_through,
    clipped_surrogate_loss,
    discounted_returns,
    inner_loss,
    log_probs_of,
    make_task_batch,
    meta_loss,
)
from agents.maml_sampler import Trajectories
from agents.mlp_policy import MLPPolicy

ALPHA = 0.3
CLIP = 0.2


def small_policy(seed=0) -> MLPPolicy:
    torch.manual_seed(seed)
    space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
    return MLPPolicy(2, space, hidden_sizes=(3,)).double()


def random_batch(policy, num_tasks=2, rollouts=3, steps=4, seed=1) -> TaskBatch:
    """Fixed trajectories whose stored log-probabilities sit close to the policy's own."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(num_tasks, rollouts, steps, 2, generator=g, dtype=torch.float64)
    actions = torch.randn(num_tasks, rollouts, steps, 2, generator=g, dtype=torch.float64)
    advantages = torch.randn(num_tasks, rollouts, steps, generator=g, dtype=torch.float64)
    mask = torch.ones(num_tasks, rollouts, steps, dtype=torch.float64)
    mask[0, 0, 3] = 0.0  # one padded step
    with torch.no_grad():
        own = log_probs_of(policy, dict(policy.named_parameters()), obs, actions)
    jitter = 0.01 * torch.randn(own.shape, generator=g, dtype=torch.float64)
    return TaskBatch(obs, actions, own + jitter, advantages, mask)


def flat_objective(policy, batches, post, first_order):
    """J(theta) as a function of one flat parameter vector."""
    names = [name for name, _ in policy.named_parameters()]
    shapes = [p.shape for _, p in policy.named_parameters()]
    sizes = [p.numel() for _, p in policy.named_parameters()]

    def unflatten(flat):
        return {n: piece.reshape(s) for n, piece, s in zip(names, flat.split(sizes), shapes)}

    def objective(flat):
        loss, _ = meta_loss(policy, unflatten(flat), batches, post, ALPHA, first_order, CLIP)
        return loss

    start = torch.cat([p.detach().reshape(-1) for _, p in policy.named_parameters()])
    return objective, unflatten, start


def finite_difference_gradient(objective, x, eps=1e-6):
    grad = torch.zeros_like(x)
    for i in range(x.numel()):
        step = torch.zeros_like(x)
        step[i] = eps
        with torch.no_grad():
            grad[i] = (objective(x + step) - objective(x - step)) / (2 * eps)
    return grad


def autograd_gradient(objective, x):
    x = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(objective(x), x)
    return gradient


@pytest.mark.parametrize("num_steps", [1, 2, 3])
def test_second_order_matches_finite_differences(num_steps):
    policy = small_policy()
    batches = [random_batch(policy, seed=10 + k) for k in range(num_steps)]
    post = random_batch(policy, seed=99)
    objective, _, theta = flat_objective(policy, batches, post, first_order=False)
    exact = autograd_gradient(objective, theta)
    numeric = finite_difference_gradient(objective, theta)
    assert exact.abs().max() > 1e-3  # a gradient worth comparing
    torch.testing.assert_close(exact, numeric, rtol=1e-5, atol=1e-8)


def test_first_order_differs_by_hessian_term():
    """One task, one step: g2 - g1 = -alpha * H_in(theta) @ grad L_out(theta')."""
    policy = small_policy()
    batch = random_batch(policy, num_tasks=1, seed=3)
    post = random_batch(policy, num_tasks=1, seed=4)
    second, unflatten, theta = flat_objective(policy, [batch], post, first_order=False)
    first, _, _ = flat_objective(policy, [batch], post, first_order=True)
    g2 = autograd_gradient(second, theta)
    g1 = autograd_gradient(first, theta)

    def task_inner(flat):
        return inner_loss(policy, unflatten(flat), batch.obs[0], batch.actions[0],
                          batch.advantages[0], batch.mask[0])

    hessian = torch.autograd.functional.hessian(task_inner, theta)
    adapted = theta - ALPHA * autograd_gradient(task_inner, theta)

    def outer_at(flat):
        params = {k: v[None] for k, v in unflatten(flat).items()}
        return clipped_surrogate_loss(policy, params, post, CLIP)[0]

    outer_gradient = autograd_gradient(outer_at, adapted)
    torch.testing.assert_close(g1, outer_gradient, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g2 - g1, -ALPHA * hessian @ outer_gradient, rtol=1e-7, atol=1e-10)
    assert (g2 - g1).abs().max() > 1e-4  # the Hessian term is really there


def test_first_order_three_steps():
    """First-order MAML's gradient is the outer gradient at theta_K, whatever K is."""
    policy = small_policy()
    batches = [random_batch(policy, num_tasks=1, seed=20 + k) for k in range(3)]
    post = random_batch(policy, num_tasks=1, seed=30)
    objective, unflatten, theta = flat_objective(policy, batches, post, first_order=True)
    with torch.no_grad():
        adapted = adapt_through(policy, unflatten(theta), batches, ALPHA, first_order=True)
    flat_adapted = torch.cat([adapted[name][0].reshape(-1) for name, _ in policy.named_parameters()])

    def outer_at(flat):
        params = {k: v[None] for k, v in unflatten(flat).items()}
        return clipped_surrogate_loss(policy, params, post, CLIP)[0]

    torch.testing.assert_close(autograd_gradient(objective, theta),
                               autograd_gradient(outer_at, flat_adapted))


def step_sizes_of(policy, rates):
    """One dict of scalar step sizes per row of ``rates`` (steps x parameter tensors)."""
    names = [name for name, _ in policy.named_parameters()]
    return [dict(zip(names, row)) for row in rates]


def test_constant_step_sizes_match_a_fixed_alpha():
    policy = small_policy()
    batches = [random_batch(policy, seed=40 + k) for k in range(2)]
    post = random_batch(policy, seed=50)
    theta = dict(policy.named_parameters())
    rates = torch.full((2, len(theta)), ALPHA, dtype=torch.float64)
    fixed, _ = meta_loss(policy, theta, batches, post, ALPHA, False, CLIP)
    learned, _ = meta_loss(policy, theta, batches, post, step_sizes_of(policy, rates), False, CLIP)
    torch.testing.assert_close(learned, fixed, rtol=0, atol=0)


def test_step_size_gradient_matches_finite_differences():
    """d J / d alpha_{k, tensor} for two steps with a different step size per tensor and step."""
    policy = small_policy()
    batches = [random_batch(policy, seed=60 + k) for k in range(2)]
    post = random_batch(policy, seed=70)
    theta = {k: v.detach() for k, v in policy.named_parameters()}
    g = torch.Generator().manual_seed(5)
    start = ALPHA * (0.5 + torch.rand(2, len(theta), generator=g, dtype=torch.float64))

    def objective(flat):
        rates = step_sizes_of(policy, flat.reshape(2, len(theta)))
        return meta_loss(policy, theta, batches, post, rates, False, CLIP)[0]

    exact = autograd_gradient(objective, start.reshape(-1))
    numeric = finite_difference_gradient(objective, start.reshape(-1))
    assert exact.abs().min() > 1e-6  # every step size moves the outer loss
    torch.testing.assert_close(exact, numeric, rtol=1e-5, atol=1e-8)


def test_steps_past_the_learned_ones_reuse_the_last():
    policy = small_policy()
    batches = [random_batch(policy, num_tasks=1, seed=80 + k) for k in range(3)]
    theta = {k: v.detach() for k, v in policy.named_parameters()}
    rates = torch.tensor([[0.1] * len(theta), [0.2] * len(theta)], dtype=torch.float64)
    learned = adapt_through(policy, theta, batches, step_sizes_of(policy, rates), False)
    by_hand = theta
    for alpha, batch in zip([0.1, 0.2, 0.2], batches):
        by_hand = {k: v[0] if v.dim() > theta[k].dim() else v for k, v in by_hand.items()}
        by_hand = adapt_through(policy, by_hand, [batch], alpha, False)
    for name in theta:
        torch.testing.assert_close(learned[name], by_hand[name])


def test_adaptation_is_inner_gradient_step():
    policy = small_policy()
    batch = random_batch(policy, num_tasks=2)
    theta = {k: v.detach() for k, v in policy.named_parameters()}
    adapted = adapt_through(policy, theta, [batch], ALPHA, first_order=False)
    for task in range(2):
        loss = inner_loss(policy, dict(policy.named_parameters()), batch.obs[task],
                          batch.actions[task], batch.advantages[task], batch.mask[task])
        grads = torch.autograd.grad(loss, list(policy.parameters()))
        for (name, value), g in zip(policy.named_parameters(), grads):
            torch.testing.assert_close(adapted[name][task], value.detach() - ALPHA * g)


def test_inner_loss_by_hand():
    """One step, categorical policy with zero logits: log pi = log(1/2) for either action."""
    space = gym.spaces.Discrete(2)
    policy = MLPPolicy(1, space, hidden_sizes=(2,)).double()
    with torch.no_grad():
        policy.head.logits.weight.zero_()
        policy.head.logits.bias.zero_()
    obs = torch.zeros(1, 2, 1, dtype=torch.float64)
    actions = torch.tensor([[0], [1]])
    advantages = torch.tensor([[2.0], [4.0]], dtype=torch.float64)
    mask = torch.ones(2, 1, dtype=torch.float64)
    loss = inner_loss(policy, dict(policy.named_parameters()), obs.reshape(2, 1, 1), actions,
                      advantages, mask)
    # -(log 0.5 * 2 + log 0.5 * 4) / 2 = 3 log 2
    assert loss.item() == pytest.approx(3 * np.log(2))


def test_clipped_surrogate_by_hand():
    """Ratios 1.5 and 0.5 with advantages +1 and -1 are clipped to 1.2 and 0.8."""
    policy = small_policy()
    params = {k: v.detach()[None] for k, v in policy.named_parameters()}
    obs = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    actions = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    with torch.no_grad():
        own = log_probs_of(policy, {k: v[0] for k, v in params.items()}, obs, actions)
    old = own - torch.log(torch.tensor([1.5, 0.5], dtype=torch.float64))
    batch = TaskBatch(obs, actions, old, torch.tensor([[[1.0, -1.0]]], dtype=torch.float64),
                      torch.ones(1, 1, 2, dtype=torch.float64))
    loss, stats = clipped_surrogate_loss(policy, params, batch, CLIP)
    # min(1.5 * 1, 1.2 * 1) = 1.2; min(0.5 * -1, 0.8 * -1) = -0.8; loss = -(1.2 - 0.8) / 2
    assert loss.item() == pytest.approx(-0.2)
    assert stats["clip_fraction"].item() == pytest.approx(1.0)


def test_discounted_returns_by_hand():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    returns = discounted_returns(rewards * mask, mask, gamma=0.5)
    torch.testing.assert_close(returns, torch.tensor([[2.75, 3.5, 3.0, 0.0]]))


def test_linear_baseline_exact_fit():
    obs = torch.tensor([[[[1.0], [20.0]]]])  # (1 task, 1 rollout, 2 steps, 1 dim)
    features = baseline_features(obs)
    # [o, o², t, t², t³, 1] with o clipped to 10 and t in hundreds of steps.
    torch.testing.assert_close(features[0, 0, 1], torch.tensor([10.0, 100.0, 0.01, 1e-4, 1e-6, 1.0]))
    # Returns that are a linear function of the features are fit almost exactly.
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(2, 5, 7, 3, generator=g)
    weights = torch.randn(2, 10, generator=g)
    target = (baseline_features(obs) * weights[:, None, None, :]).sum(-1)
    fitted = fit_predict(obs, target, torch.ones_like(target))
    torch.testing.assert_close(fitted, target, rtol=1e-3, atol=1e-3)


def test_baseline_ignores_padding():
    obs = torch.randn(1, 4, 6, 2)
    returns = torch.randn(1, 4, 6)
    mask = torch.ones(1, 4, 6)
    mask[0, 1, 3:] = 0.0
    garbage = returns.clone()
    garbage[0, 1, 3:] = 1e6
    a = fit_predict(obs, returns * mask, mask)
    b = fit_predict(obs, garbage, mask)
    torch.testing.assert_close(a, b)
    assert a[0, 1, 3:].abs().max() == 0


def test_advantages_lambda_one():
    g = torch.Generator().manual_seed(2)
    obs = torch.randn(2, 3, 5, 2, generator=g)
    rewards = torch.randn(2, 3, 5, generator=g)
    mask = torch.ones(2, 3, 5)
    mask[1, 2, 2:] = 0.0
    rewards = rewards * mask
    trajectories = Trajectories(obs, torch.zeros(2, 3, 5), torch.zeros(2, 3, 5), rewards, mask,
                                torch.zeros(2, 3, 5, dtype=torch.bool))
    batch = make_task_batch(trajectories, gamma=0.9, gae_lambda=1.0, normalize=False)
    returns = discounted_returns(rewards, mask, 0.9)
    expected = (returns - fit_predict(obs, returns, mask)) * mask
    torch.testing.assert_close(batch.advantages, expected, rtol=1e-4, atol=1e-5)

    normalized = make_task_batch(trajectories, gamma=0.9, gae_lambda=1.0).advantages
    for task in range(2):
        valid = normalized[task][mask[task].bool()]
        assert valid.mean().abs() < 1e-5
        assert (valid.pow(2).mean() - 1).abs() < 1e-4
