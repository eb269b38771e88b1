"""Rollout collection for recurrent policies on batched trial environments."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agents.networks import RecurrentActorCritic, clip_action_tensor
from agents.recurrent import reset_recurrent_state
from envs.batched import BatchedTrialEnv
from envs.trial import NonFiniteError


@dataclass
class Rollout:
    """One rollout, time-major: every tensor starts with ``(num_steps, num_envs)``.

    Attributes:
        obs: observations fed to the policy, ``(T, N, obs_dim)``.
        last_obs: the observation that the rollout's last step led to, ``(N, obs_dim)``, the
            first observation of the next rollout.
        hidden_in: recurrent state before the reset of step t, ``(T, N, state_size)``. The replay
            starts each sequence from this state and applies the same stored reset.
        trial_start: ``(T, N)`` bool, obs[t] is the first observation of a trial.
        actions: ``(T, N)`` for Discrete, ``(T, N, action_dim)`` for Box.
        log_probs: log pi(a_t | history) at collection time, ``(T, N)``.
        values: V(history_t) at collection time, ``(T, N)``.
        next_values: V of the observation step t really led to, ``(T, N)``.
        rewards: ``(T, N)``.
        terminated: ``(T, N)`` bool, the trial terminated at step t.
        done: ``(T, N)`` bool, the trial ended at step t (terminated or truncated).
        episode_index: inner-episode index of step t, ``(T, N)`` int64.
        episode_end: ``(T, N)`` bool, an inner episode ended at step t.
        task_index: index into the env's task set of the task at step t, ``(T, N)`` int64.
        displacements: where step t left the agent relative to its episode's start,
            ``(T, N, k)``; None when the env has no positions
            (:meth:`envs.batched.BatchedEnv.displacement`).
        advantages: filled by GAE, ``(T, N)``.
        returns: value targets, ``(T, N)``.
    """

    obs: torch.Tensor
    last_obs: torch.Tensor
    hidden_in: torch.Tensor
    trial_start: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    next_values: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    done: torch.Tensor
    episode_index: torch.Tensor
    episode_end: torch.Tensor
    task_index: torch.Tensor
    displacements: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None

    @property
    def next_obs(self) -> torch.Tensor:
        """Return the observation that each step led to, ``(T, N, obs_dim)``: obs[t + 1].

        After a trial's last step it is the first observation of the next trial.
        """
        return torch.cat([self.obs[1:], self.last_obs[None]])

    @property
    def num_steps(self) -> int:
        return self.rewards.shape[0]

    @property
    def num_envs(self) -> int:
        return self.rewards.shape[1]


@dataclass
class TrialStatistics:
    """Running sums over finished trials, kept on the device until a rollout ends.

    Attributes:
        trial_return_sum: sum of the returns of trials that finished, scalar tensor.
        trial_count: number of trials that finished, scalar tensor.
        episode_return_sum: per inner-episode index, sum of finished episodes' returns, ``(K,)``.
        episode_count: per inner-episode index, finished episodes, ``(K,)``.
    """

    trial_return_sum: torch.Tensor
    trial_count: torch.Tensor
    episode_return_sum: torch.Tensor
    episode_count: torch.Tensor


class RolloutCollector:
    """Steps a :class:`BatchedTrialEnv` with a recurrent policy and records rollouts.

    The collector owns the environment's current observation and the policy's recurrent
    state between rollouts, so trials continue across rollout boundaries. Nothing in
    :meth:`collect` reads a value back to the host.

    Args:
        env: the batched trial environment.
        state_size: width of the policy's flat recurrent state.
        generator: torch generator for action sampling.
    """

    def __init__(self, env: BatchedTrialEnv, state_size: int, generator: torch.Generator | None):
        self.env = env
        self.generator = generator
        n, device = env.num_envs, env.device
        self.obs = env.reset()
        self.hidden = torch.zeros(n, state_size, device=device)
        self.trial_start = torch.ones(n, dtype=torch.bool, device=device)
        self._trial_return = torch.zeros(n, device=device)
        self._episode_return = torch.zeros(n, device=device)

    @torch.no_grad()
    def collect(self, policy: RecurrentActorCritic, num_steps: int) -> tuple[Rollout, TrialStatistics]:
        device = self.env.device
        k = self.env.episodes_per_trial
        stats = TrialStatistics(
            trial_return_sum=torch.zeros((), device=device),
            trial_count=torch.zeros((), device=device),
            episode_return_sum=torch.zeros(k, device=device),
            episode_count=torch.zeros(k, device=device),
        )
        steps = []
        try:
            for _ in range(num_steps):
                self._step(policy, steps, stats)
        except RuntimeError:
            # A non-finite observation makes the policy's sampling fail before the rollout
            # ends; name the env, task and step behind it if that is the cause.
            if steps:
                self._check_finite(self._stack(steps, torch.zeros_like(steps[0][5])))
            raise

        last_value = policy.step(self.obs, reset_recurrent_state(self.hidden, self.trial_start))[1]
        rollout = self._stack(steps, last_value)
        self._check_finite(rollout)
        return rollout, stats

    def _check_finite(self, rollout: Rollout) -> None:
        """Raise :class:`NonFiniteError` naming env, task and step; one host sync per rollout."""
        bad = ~(torch.isfinite(rollout.obs).all(-1) & torch.isfinite(rollout.rewards))
        if not bool(bad.any()):
            return
        t, i = (int(v) for v in bad.nonzero()[0])
        task = self.env.tasks[int(rollout.task_index[t, i])]
        raise NonFiniteError(
            f"{self.env.name} returned a non-finite observation or reward in env {i} at step "
            f"{t} of the rollout on task {task}: reward={float(rollout.rewards[t, i])}, "
            f"observation={rollout.obs[t, i].tolist()}. Check the environment's dynamics."
        )

    def _step(self, policy: RecurrentActorCritic, steps: list, stats: TrialStatistics) -> None:
        """Advance every env one step and append the step's record to ``steps``."""
        env, head = self.env, policy.head
        hidden_in = self.hidden
        task_index = env.task_index
        hidden = reset_recurrent_state(hidden_in, self.trial_start)
        params, value, self.hidden = policy.step(self.obs, hidden)
        action = head.sample(params, self.generator)
        log_prob = head.log_prob(params, action)
        result = env.step(clip_action_tensor(env.action_space, action))

        # A truncated trial bootstraps from V of its real final observation, computed from the
        # state before any reset. Trials of fixed length never truncate, so they skip this pass.
        next_value = torch.zeros_like(value)
        if getattr(env, "may_truncate", False):
            next_value = policy.step(result.final_obs, self.hidden)[1]

        steps.append((self.obs, hidden_in, self.trial_start, action, log_prob, value,
                      next_value, task_index, result))
        self._accumulate(stats, result)
        self.obs = result.obs
        self.trial_start = result.terminated | result.truncated

    def _accumulate(self, stats: TrialStatistics, result) -> None:
        done = result.terminated | result.truncated
        self._trial_return += result.reward
        self._episode_return += result.reward
        stats.trial_return_sum += (self._trial_return * done).sum()
        stats.trial_count += done.sum()
        end = result.episode_end.to(result.reward.dtype)
        stats.episode_return_sum.index_add_(0, result.episode_index, self._episode_return * end)
        stats.episode_count.index_add_(0, result.episode_index, end)
        self._trial_return = self._trial_return * (~done)
        self._episode_return = self._episode_return * (~result.episode_end)

    @staticmethod
    def _stack(steps, last_value: torch.Tensor) -> Rollout:
        (obs, hidden_in, trial_start, actions, log_probs, values, next_values, task_index,
         results) = zip(*steps)
        values = torch.stack(values)
        terminated = torch.stack([r.terminated for r in results])
        truncated = torch.stack([r.truncated for r in results])
        # V(s_{t+1}) is the next step's value inside a trial, the last value at the rollout's
        # end, and the final observation's value after a truncation.
        following = torch.cat([values[1:], last_value[None]])
        next_values = torch.where(truncated, torch.stack(next_values), following)
        displacements = (None if results[0].displacement is None
                         else torch.stack([r.displacement for r in results]))
        return Rollout(
            obs=torch.stack(obs),
            last_obs=results[-1].obs,
            hidden_in=torch.stack(hidden_in),
            trial_start=torch.stack(trial_start),
            actions=torch.stack(actions),
            log_probs=torch.stack(log_probs),
            values=values,
            next_values=next_values,
            rewards=torch.stack([r.reward for r in results]),
            terminated=terminated,
            done=terminated | truncated,
            episode_index=torch.stack([r.episode_index for r in results]),
            episode_end=torch.stack([r.episode_end for r in results]),
            task_index=torch.stack(task_index),
            displacements=displacements,
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "env": self.env.state_dict(),
            "obs": self.obs.clone(),
            "hidden": self.hidden.clone(),
            "trial_start": self.trial_start.clone(),
            "trial_return": self._trial_return.clone(),
            "episode_return": self._episode_return.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        device = self.env.device
        self.env.load_state_dict(state["env"])
        self.obs = state["obs"].to(device)
        self.hidden = state["hidden"].to(device)
        self.trial_start = state["trial_start"].to(device)
        self._trial_return = state["trial_return"].to(device)
        self._episode_return = state["episode_return"].to(device)
