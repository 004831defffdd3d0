"""CLAPP's per-position hinge loss (``pooled: false``, the default since the linear probes of issue 21 measured it
above the random encoder while the pooled loss fell below it) and its gradient locality in both forms."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.agents import AGENTS
from rlkit.auxiliary import AUX_MODULES
from rlkit.auxiliary.clapp import encoder_blocks, hinge_scores, pool
from rlkit.errors import ConfigError
from rlkit.experience.replay import Transitions

PIXELS = gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)
DISCRETE = gym.spaces.Discrete(2)


def _agent(**clapp):
    config_cls, agent_cls = AGENTS["dqn"]
    torch.manual_seed(0)
    return agent_cls(config_cls(aux=[AUX_MODULES["clapp"](name="clapp", weight=1.0, **clapp)]), PIXELS, DISCRETE,
                     "cpu", 0)


def _frames(n: int, seed: int) -> torch.Tensor:
    PIXELS.seed(seed)
    return torch.as_tensor(np.stack([PIXELS.sample() for _ in range(n)]))


def _transitions(n: int = 8) -> Transitions:
    return Transitions(obs=_frames(n, 0), actions=torch.zeros(n, dtype=torch.int64), rewards=torch.zeros(n),
                       next_obs=_frames(n, 1), discounts=torch.full((n,), 0.99), weights=torch.ones(n),
                       indices=torch.arange(n))


def test_per_position_hinge_is_the_vector_hinge_at_each_position() -> None:
    torch.manual_seed(0)
    future, context, W = torch.randn(5, 3, 2, 4), torch.randn(5, 3, 2, 4), torch.randn(3, 3)
    by_hand = torch.stack([hinge_scores(future[:, :, i, j], context[:, :, i, j], W)
                           for i in range(2) for j in range(4)]).mean()
    torch.testing.assert_close(hinge_scores(future, context, W), by_hand)
    # one position by hand: u_pos = z_{t+1}(p)^T W c_t(p), the negative the next row's future at the same p
    f, c = future[:, :, 1, 2], context[:, :, 1, 2]
    u_pos = torch.stack([f[b] @ W @ c[b] for b in range(5)])
    u_neg = torch.stack([f[(b - 1) % 5] @ W @ c[b] for b in range(5)])
    torch.testing.assert_close(hinge_scores(f, c, W), (torch.relu(1 - u_pos) + torch.relu(1 + u_neg)).mean())


def test_default_scores_convolutions_per_position_pooled_on_request() -> None:
    assert AUX_MODULES["clapp"](name="clapp", weight=1.0).pooled is False
    batch = _transitions()
    unpooled, pooled = _agent(), _agent(pooled=True)
    assert [tuple(W.shape) for W in unpooled.aux_modules["clapp"].W] == [(32, 32), (64, 64), (64, 64), (512, 512)]
    # the same weights (seed 0), so the linear block's loss is the same and the convolutions' differ
    a = unpooled.aux_modules["clapp"].layer_losses(batch.obs, batch.next_obs, unpooled)
    b = pooled.aux_modules["clapp"].layer_losses(batch.obs, batch.next_obs, pooled)
    torch.testing.assert_close(a[3], b[3])
    assert all(not torch.isclose(x, y) for x, y in zip(a[:3], b[:3]))
    # the pooled loss cannot tell where things are: mirrored frames (obs and future alike) score the same...
    module = pooled.aux_modules["clapp"]
    x = module._blocks[0](batch.obs)
    y = module._blocks[0](batch.next_obs)
    W = module.W[0].detach() * 1000  # scores past the margin (at initialisation every u is near 0: loss ~2)
    torch.testing.assert_close(hinge_scores(pool(y), pool(x), W), hinge_scores(pool(y.flip(-1)), pool(x.flip(-1)), W))
    # ...the per-position one can: a future whose positions are shuffled is scored differently
    perm = torch.randperm(y.shape[-1], generator=torch.Generator().manual_seed(0))
    assert abs(float(hinge_scores(y, x, W)) - float(hinge_scores(y[..., perm], x, W))) > 1e-3


@pytest.mark.parametrize("pooled", [False, True])
def test_no_gradient_crosses_a_block_in_either_form(pooled: bool) -> None:
    agent = _agent(pooled=pooled)
    module = agent.aux_modules["clapp"]
    blocks = encoder_blocks(agent.parts.module_at("q_net.encoder"))
    batch = _transitions()
    losses = module.layer_losses(batch.obs, batch.next_obs, agent)
    assert len(losses) == len(blocks) == 4
    for l, loss in enumerate(losses):
        for m, block in enumerate(blocks):
            grads = torch.autograd.grad(loss, list(block.parameters()), retain_graph=True, allow_unused=True)
            assert all((g is not None and bool(g.abs().sum() > 0)) if m == l else g is None for g in grads), (l, m)


def test_one_update_trains_with_the_per_position_loss() -> None:
    agent = _agent()
    encoder = agent.parts.module_at("q_net.encoder")
    before = [p.clone() for p in encoder.parameters()]
    agent.update(_transitions())
    assert "aux/clapp" in agent.aux_metrics and torch.isfinite(agent.aux_metrics["aux/clapp"])
    assert any(not torch.equal(p, q) for p, q in zip(before, encoder.parameters()))


def test_linear_probe_per_block_features_end_at_the_encoder_output_and_rank_sees_collapse() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import linear_probe

    encoder = _agent().parts.module_at("q_net.encoder")
    obs = _frames(6, 2).numpy()
    per_block = linear_probe.block_features(encoder, obs)
    assert [f.shape[1] for f in per_block] == [32 * 15 * 15, 64 * 6 * 6, 64 * 4 * 4, 512]
    np.testing.assert_allclose(per_block[-1], linear_probe.features(encoder, obs), rtol=1e-6, atol=1e-7)
    rng = np.random.default_rng(0)
    line = rng.normal(size=(200, 1)) * rng.normal(size=(1, 8))
    assert abs(linear_probe.effective_rank(line) - 1.0) < 1e-6
    assert linear_probe.effective_rank(rng.normal(size=(2000, 8))) > 7.5


def test_several_negatives_are_other_rows_and_their_hinges_are_averaged() -> None:
    from rlkit.auxiliary.clapp import negative_rows

    torch.manual_seed(0)
    rows = negative_rows(7, 16)
    assert rows.shape == (16, 7)
    assert not (rows == torch.arange(7)[None]).any()      # never the row's own future
    assert set(rows.flatten().tolist()) == set(range(7))  # drawn from every other row
    assert negative_rows(7, 1).tolist() == [[6, 0, 1, 2, 3, 4, 5]]  # one negative: the previous row, as before
    W1 = torch.randn(5, 5)
    for shape in ((7, 5), (7, 5, 2, 3)):  # one negative is the loss before `negatives` existed, bit for bit
        f, c = torch.randn(*shape), torch.randn(*shape)
        dims = 1 if len(shape) == 4 else -1
        proj = torch.einsum("oc,bchw->bohw", W1, c) if len(shape) == 4 else c @ W1.T
        old = (torch.relu(1 - (f * proj).sum(dims)) + torch.relu(1 + (f.roll(1, dims=0) * proj).sum(dims))).mean()
        assert torch.equal(hinge_scores(f, c, W1), old)
    f, c, W = torch.randn(7, 5), torch.randn(7, 5), torch.randn(5, 5)
    u_pos = torch.stack([f[b] @ W @ c[b] for b in range(7)])
    u_neg = torch.stack([torch.stack([f[int(rows[n, b])] @ W @ c[b] for b in range(7)]) for n in range(16)])
    by_hand = torch.relu(1 - u_pos).mean() + torch.relu(1 + u_neg).mean()
    torch.testing.assert_close(hinge_scores(f, c, W, rows), by_hand)
    # per position: the same draw of rows at every position
    f4, c4 = torch.randn(7, 5, 2, 3), torch.randn(7, 5, 2, 3)
    each = torch.stack([hinge_scores(f4[:, :, i, j], c4[:, :, i, j], W, rows) for i in range(2) for j in range(3)])
    torch.testing.assert_close(hinge_scores(f4, c4, W, rows), each.mean())


def test_clapp_negatives_config_and_loss() -> None:
    for bad in (0, 2.5, True):
        with pytest.raises(ConfigError, match="negatives must be >= 1"):
            AUX_MODULES["clapp"](name="clapp", weight=1.0, negatives=bad)
    batch = _transitions(8)
    losses = {}
    for n in (1, 4):
        torch.manual_seed(0)
        agent = _agent(negatives=n)
        losses[n] = agent.aux_modules["clapp"].layer_losses(batch.obs, batch.next_obs, agent)
        assert len(losses[n]) == 4 and all(torch.isfinite(loss) and loss > 0 for loss in losses[n])
    # the same weights (same seed), other negatives: the option reaches the loss
    assert any(not torch.equal(a, b) for a, b in zip(losses[1], losses[4]))
