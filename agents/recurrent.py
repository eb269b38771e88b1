"""The single owner of recurrent-state resets.

Every agent with memory (RL²'s GRU, the memory-augmented policy) clears its state here and
nowhere else. The reset is driven by a ``trial_start`` mask stored beside the observations,
so that a rollout and its replay in the PPO update clear the state at exactly the same steps.
Inner-episode boundaries do not reset anything: memory must carry across them.
"""

from __future__ import annotations

import torch


def reset_recurrent_state(state: torch.Tensor, trial_start: torch.Tensor) -> torch.Tensor:
    """Zero the state of every env whose current step starts a new trial.

    Args:
        state: recurrent state, shape ``(batch, ...)``; the leading axis is the env.
        trial_start: shape ``(batch,)``, bool or 0/1 float: 1 where the observation fed
            with this state is the first of a trial.

    Returns:
        The state with the rows of trial starts set to zero, same shape and dtype.
    """
    if trial_start.shape != state.shape[:1]:
        raise ValueError(
            f"expected trial_start of shape {tuple(state.shape[:1])}, got {tuple(trial_start.shape)}"
        )
    keep = (~trial_start.bool()).to(state.dtype)
    return state * keep.reshape(-1, *([1] * (state.dim() - 1)))
