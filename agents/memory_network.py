"""A recurrent controller with an external memory, in the style of memory-augmented networks.

Santoro et al., 2016, "Meta-Learning with Memory-Augmented Neural Networks": the controller
reads memory by content (cosine similarity sharpened by a learned key strength, then a
softmax over slots) and writes with least-recently-used access (LRUA). Each read head h has
its own write: the write weights interpolate, by a learned sigmoid gate, between the slots
head h read at the previous step and the h-th least-used slot, which is cleared first.
Usage decays by ``usage_decay`` per step and accumulates read and write weights. Unlike the
paper, whose heads write their read key, each head here writes a separate learned vector.

The whole memory state (controller state, slots, usage, read weights, read vectors) lives in
one flat tensor per environment, so that rollouts store it, the PPO update replays it and
:func:`agents.recurrent.reset_recurrent_state` clears it exactly as it does a GRU state. A
zero state is an empty memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch
from torch import nn
from torch.nn import functional as F

from agents.networks import (
    OutcomePredictor,
    RewardPredictor,
    check_observation_width,
    make_encoder,
    make_policy_head,
    orthogonal_linear,
)
from agents.recurrent import reset_recurrent_state

CONTROLLERS = ("gru", "lstm")

# Added to the norm product of the cosine similarity so that empty slots score 0, not NaN.
_COSINE_EPS = 1e-8


def content_read_weights(keys: torch.Tensor, memory: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Return softmax(strength * cosine(key, slot)) over slots for each read head.

    Args:
        keys: ``(batch, num_reads, width)``.
        memory: ``(batch, num_slots, width)``.
        strength: key strength beta >= 0, ``(batch, num_reads)``.

    Returns:
        Read weights ``(batch, num_reads, num_slots)``; each row sums to one.
    """
    dots = keys @ memory.transpose(1, 2)
    norms = keys.norm(dim=-1)[:, :, None] * memory.norm(dim=-1)[:, None, :]
    similarity = dots / (norms + _COSINE_EPS)
    return torch.softmax(strength[:, :, None] * similarity, dim=-1)


def least_used_weights(usage: torch.Tensor, num_reads: int) -> torch.Tensor:
    """Return one-hot weights on the ``num_reads`` least-used slots, head h on the h-th least used.

    Ties go to the lower slot index (a stable sort), so an empty memory fills slot 0 first.

    Args:
        usage: ``(batch, num_slots)``.

    Returns:
        ``(batch, num_reads, num_slots)`` of 0.0 and 1.0.
    """
    order = torch.sort(usage, dim=-1, stable=True).indices[:, :num_reads]
    return F.one_hot(order, usage.shape[-1]).to(usage.dtype)


def lrua_write(
    memory: torch.Tensor,
    previous_read_weights: torch.Tensor,
    usage: torch.Tensor,
    gate: torch.Tensor,
    content: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Write ``content`` with least-recently-used access; return the new memory and write weights.

    Args:
        memory: ``(batch, num_slots, width)`` before the write.
        previous_read_weights: the previous step's read weights, ``(batch, num_reads, num_slots)``.
        usage: usage before this step, ``(batch, num_slots)``.
        gate: sigmoid-space gate logits, ``(batch, num_reads)``; 1 after the sigmoid writes
            where the head last read, 0 writes to its least-used slot.
        content: vectors to write, ``(batch, num_reads, width)``.

    Returns:
        ``(memory, write_weights)`` with shapes ``(batch, num_slots, width)`` and
        ``(batch, num_reads, num_slots)``.
    """
    least_used = least_used_weights(usage, previous_read_weights.shape[1])
    alpha = torch.sigmoid(gate)[:, :, None]
    write_weights = alpha * previous_read_weights + (1 - alpha) * least_used
    # The least-used slots are cleared before the write, as in LRUA.
    keep = 1 - least_used.sum(dim=1).clamp(max=1)
    memory = memory * keep[:, :, None] + write_weights.transpose(1, 2) @ content
    return memory, write_weights


@dataclass(frozen=True)
class MemoryLayout:
    """Offsets of the memory state's parts in the flat state vector, in this order.

    Attributes:
        controller: GRU state, or LSTM hidden and cell states, ``controller`` floats.
        num_slots, width, num_reads: memory shape.
    """

    controller: int
    num_slots: int
    width: int
    num_reads: int

    @property
    def sizes(self) -> tuple[int, ...]:
        # controller, slots, usage, read weights, read vectors
        return (
            self.controller,
            self.num_slots * self.width,
            self.num_slots,
            self.num_reads * self.num_slots,
            self.num_reads * self.width,
        )

    @property
    def state_size(self) -> int:
        return sum(self.sizes)

    def unpack(self, state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Split ``(batch, state_size)`` into controller, memory, usage, read weights and reads."""
        controller, memory, usage, read_weights, reads = torch.split(state, self.sizes, dim=-1)
        batch = state.shape[0]
        return (
            controller,
            memory.reshape(batch, self.num_slots, self.width),
            usage,
            read_weights.reshape(batch, self.num_reads, self.num_slots),
            reads.reshape(batch, self.num_reads, self.width),
        )

    def pack(self, controller, memory, usage, read_weights, reads) -> torch.Tensor:
        batch = controller.shape[0]
        return torch.cat(
            [controller, memory.reshape(batch, -1), usage, read_weights.reshape(batch, -1),
             reads.reshape(batch, -1)],
            dim=-1,
        )


class MemoryActorCritic(nn.Module):
    """Observation encoder, recurrent controller with an external memory, policy and value heads.

    At each step the controller takes the encoded observation and the previous step's read
    vectors. Its output sets each head's read key, key strength, write vector and write gate.
    The heads see the controller output and this step's read vectors.

    With ``reward_prediction`` a small network reads what the heads read and the action
    taken, and predicts the reward that follows (:meth:`predict_rewards`). Its loss is an
    auxiliary objective of the PPO update, and the policy never reads the prediction. With
    ``observation_prediction_size`` another one predicts the next observation from the same
    inputs (:func:`agents.ppo.observation_prediction_loss`), and with
    ``position_prediction_size`` a third predicts where the step leaves the agent
    (:func:`agents.ppo.position_prediction_loss`).

    Args:
        observation_dim: width of the trial observation.
        action_space: Discrete (categorical head) or 1-D Box (Gaussian head).
        hidden_size: width of the encoder and of the controller state.
        controller: ``"gru"`` or ``"lstm"``.
        num_slots: memory slots N.
        width: floats per slot W.
        num_reads: read heads, each with its own write.
        usage_decay: factor applied to usage each step, in [0, 1].
        reward_prediction: add the reward predictor.
        observation_prediction_size: width of the next observation that the observation
            predictor predicts, the base observation's width; 0 leaves it out.
        position_prediction_size: width of the env's displacement that the position
            predictor predicts; 0 leaves it out.
    """

    def __init__(
        self,
        observation_dim: int,
        action_space: gym.Space,
        hidden_size: int = 64,
        controller: str = "gru",
        num_slots: int = 16,
        width: int = 16,
        num_reads: int = 1,
        usage_decay: float = 0.95,
        reward_prediction: bool = False,
        observation_prediction_size: int = 0,
        position_prediction_size: int = 0,
    ):
        super().__init__()
        check_memory_shape(hidden_size, controller, num_slots, width, num_reads, usage_decay)
        self.observation_dim = int(observation_dim)
        self.hidden_size = int(hidden_size)
        self.controller_kind = controller
        self.usage_decay = float(usage_decay)
        controller_size = hidden_size * (2 if controller == "lstm" else 1)
        self.layout = MemoryLayout(controller_size, int(num_slots), int(width), int(num_reads))
        self.state_size = self.layout.state_size

        read_size = num_reads * width
        self.encoder = make_encoder(observation_dim, hidden_size)
        cell = nn.GRUCell if controller == "gru" else nn.LSTMCell
        self.controller = cell(hidden_size + read_size, hidden_size)
        # Per head: read key (width), key strength (1), write vector (width), write gate (1).
        self.interface = orthogonal_linear(nn.Linear(hidden_size, num_reads * (2 * width + 2)), 1.0)
        self.head = make_policy_head(action_space, hidden_size + read_size)
        self.critic = orthogonal_linear(nn.Linear(hidden_size + read_size, 1), 1.0)
        # The predictors are built last, so that a network without them draws the same
        # initial weights.
        self.reward_predictor = (
            RewardPredictor(hidden_size + read_size, action_space, hidden_size)
            if reward_prediction else None
        )
        self.observation_predictor = (
            OutcomePredictor(hidden_size + read_size, action_space, hidden_size,
                             observation_prediction_size)
            if observation_prediction_size else None
        )
        self.position_predictor = (
            OutcomePredictor(hidden_size + read_size, action_space, hidden_size,
                             position_prediction_size)
            if position_prediction_size else None
        )

    def initial_state(self, batch_size: int, device=None) -> torch.Tensor:
        """Return the empty memory, shape ``(batch_size, state_size)``."""
        return torch.zeros(batch_size, self.state_size, device=device)

    def step(
        self, obs: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance one step from an already reset state.

        Args:
            obs: ``(batch, observation_dim)``.
            state: ``(batch, state_size)``, after :func:`agents.recurrent.reset_recurrent_state`.

        Returns:
            ``(policy_params, value, next_state)``: head parameters ``(batch, ...)``,
            value ``(batch,)`` and the next state ``(batch, state_size)``.
        """
        check_observation_width(obs, self.observation_dim)
        features, parts = self._advance(self.encoder(obs), self.layout.unpack(state))
        return self.head(features), self.critic(features).squeeze(-1), self.layout.pack(*parts)

    def _advance(
        self, encoded: torch.Tensor, parts: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Advance the controller one step, then write to and read from the memory.

        Args:
            encoded: the encoded observation, ``(batch, hidden_size)``.
            parts: controller state, memory, usage, read weights and read vectors, as
                :meth:`MemoryLayout.unpack` returns them.

        Returns:
            ``(features, parts)``: what the heads read, ``(batch, hidden_size + read_size)``,
            and the next state's parts.
        """
        batch = encoded.shape[0]
        layout = self.layout
        controller_state, memory, usage, read_weights, reads = parts
        inputs = torch.cat([encoded, reads.reshape(batch, -1)], dim=-1)
        if self.controller_kind == "lstm":
            h, c = self.controller(inputs, tuple(controller_state.chunk(2, dim=-1)))
            output, controller_state = h, torch.cat([h, c], dim=-1)
        else:
            output = controller_state = self.controller(inputs, controller_state)

        interface = self.interface(output).reshape(batch, layout.num_reads, 2 * layout.width + 2)
        keys, strength, content, gate = torch.split(interface, [layout.width, 1, layout.width, 1], -1)
        memory, write_weights = lrua_write(memory, read_weights, usage, gate.squeeze(-1),
                                           torch.tanh(content))
        read_weights = content_read_weights(torch.tanh(keys), memory, F.softplus(strength.squeeze(-1)))
        reads = read_weights @ memory
        usage = self.usage_decay * usage + read_weights.sum(dim=1) + write_weights.sum(dim=1)
        features = torch.cat([output, reads.reshape(batch, -1)], dim=-1)
        return features, (controller_state, memory, usage, read_weights, reads)

    def unroll(
        self, obs: torch.Tensor, state: torch.Tensor, trial_start: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run stored sequences, clearing the memory where ``trial_start`` is set.

        The same as :meth:`unroll_features` without the heads' input.
        """
        return self.unroll_features(obs, state, trial_start)[:3]

    def predict_rewards(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Predict the reward that follows each action from what the heads read.

        Args:
            features: the controller output and read vectors, ``(..., hidden_size +
                read_size)``, from :meth:`unroll_features`.
            actions: the actions taken, ``(...)`` for Discrete or ``(..., action_dim)`` for Box.

        Returns:
            The predicted rewards, ``(...)``.
        """
        return OutcomePredictor.require(self.reward_predictor, "reward")(features, actions)

    def unroll_features(
        self, obs: torch.Tensor, state: torch.Tensor, trial_start: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run stored sequences step by step, clearing the memory where ``trial_start`` is set.

        The reads feed the next controller input, so there is no fused multi-step kernel.
        The numbers are those of :func:`reset_recurrent_state` followed by :meth:`step` at
        every step, as in the rollout. The encoder and the heads run once over the whole
        sequence, the state stays in its parts between steps, and the reset runs only at the
        steps where some trial starts (found with one read of the mask to the host).

        Args:
            obs: ``(seq_len, batch, observation_dim)``.
            state: ``(batch, state_size)``, the state before the first step's reset.
            trial_start: ``(seq_len, batch)`` bool.

        Returns:
            ``(policy_params, values, final_state, features)``: ``(seq_len, batch, ...)``,
            ``(seq_len, batch)``, ``(batch, state_size)`` and the heads' input ``(seq_len,
            batch, hidden_size + read_size)``.
        """
        check_observation_width(obs, self.observation_dim)
        encoded = self.encoder(obs)
        reset_steps = set(trial_start.any(dim=1).nonzero().flatten().tolist())
        parts = self.layout.unpack(state)
        features = []
        # unbind, not encoded[t]: the backward of T separate indexings would build T
        # zero-filled copies of the whole sequence's gradient.
        for t, step_encoded in enumerate(encoded.unbind(0)):
            if t in reset_steps:
                parts = tuple(reset_recurrent_state(part, trial_start[t]) for part in parts)
            step_features, parts = self._advance(step_encoded, parts)
            features.append(step_features)
        features = torch.stack(features)
        values = self.critic(features).squeeze(-1)
        return self.head(features), values, self.layout.pack(*parts), features


def check_memory_shape(
    hidden_size: int, controller: str, num_slots: int, width: int, num_reads: int, usage_decay: float
) -> None:
    """Raise ValueError naming the first invalid memory setting and how to fix it."""
    for name, value in (("hidden_size", hidden_size), ("memory_slots", num_slots),
                        ("memory_width", width), ("num_reads", num_reads)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if num_reads > num_slots:
        raise ValueError(
            f"num_reads ({num_reads}) must not exceed memory_slots ({num_slots}): each read head "
            "writes to its own least-used slot. Add slots or use fewer read heads."
        )
    if controller not in CONTROLLERS:
        raise ValueError(f"unknown controller {controller!r}; choose one of {CONTROLLERS}")
    if not 0.0 <= usage_decay <= 1.0:
        raise ValueError(f"usage_decay must lie in [0, 1], got {usage_decay!r}")
