"""The linear feature baseline of the MAML paper, refit on each task's own trajectories.

The baseline predicts a state's return from the features ``[o, o², t, t², t³, 1]``, with
the observation ``o`` clipped to [-10, 10] and the time ``t`` counted in hundreds of steps
(Duan et al., 2016, "Benchmarking Deep Reinforcement Learning for Continuous Control"). It is
fit by ridge regression, independently per task, on the discounted returns of that task's
trajectories, and keeps no parameters between fits.
"""

from __future__ import annotations

import torch

# Ridge strength of the first try; raised tenfold while the solve is not finite.
INITIAL_RIDGE = 1e-5
MAX_RIDGE_TRIES = 5


def baseline_features(obs: torch.Tensor) -> torch.Tensor:
    """Return the features of every step, ``(..., T, 2 * obs_dim + 4)``, for ``obs (..., T, obs_dim)``."""
    clipped = obs.clamp(-10.0, 10.0)
    steps = obs.shape[-2]
    t = torch.arange(steps, dtype=obs.dtype, device=obs.device) / 100.0
    t = t.reshape(*(1,) * (obs.dim() - 2), steps, 1).expand(*obs.shape[:-1], 1)
    return torch.cat([clipped, clipped.pow(2), t, t.pow(2), t.pow(3), torch.ones_like(t)], dim=-1)


def fit_predict(obs: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fit one baseline per task and return its prediction at every step.

    Args:
        obs: ``(num_tasks, num_trajectories, T, obs_dim)``.
        returns: discounted returns to go, ``(num_tasks, num_trajectories, T)``.
        mask: 1.0 on steps that happened, 0.0 on padding after an episode ended; same shape.

    Returns:
        Baseline values ``(num_tasks, num_trajectories, T)``, zero on padding.
    """
    num_tasks = obs.shape[0]
    # float64: the normal equations of cubic time features are badly conditioned in float32.
    features = baseline_features(obs.double()) * mask.double()[..., None]
    x = features.reshape(num_tasks, -1, features.shape[-1])
    y = (returns.double() * mask.double()).reshape(num_tasks, -1, 1)
    gram = x.transpose(1, 2) @ x
    target = x.transpose(1, 2) @ y
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    ridge = INITIAL_RIDGE
    for _ in range(MAX_RIDGE_TRIES):
        weights = torch.linalg.solve(gram + ridge * eye, target)
        if bool(torch.isfinite(weights).all()):
            break
        ridge *= 10.0
    values = (features @ weights[:, None]).squeeze(-1)
    return values.to(returns.dtype)
