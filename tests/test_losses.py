import math

import pytest
import torch

from maskreid.models import losses


def test_batch_hard_triplet_by_hand() -> None:
    # 1-d embeddings: id 0 at 0 and 1, id 1 at 3 and 7.
    emb = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    pids = torch.tensor([0, 0, 1, 1])
    # anchor 0: hardest pos 1, hardest neg 3 -> max(1-3+1, 0) = 0
    # anchor 1: pos 1, neg |1-3| = 2 -> 0
    # anchor 3 (value 3): pos 4, neg 2 -> 4-2+1 = 3
    # anchor 7: pos 4, neg 6 -> 0
    assert losses.batch_hard_triplet(emb, pids, margin=1.0).item() == pytest.approx(3 / 4)
    assert losses.batch_hard_triplet(emb, pids, margin=0.0).item() == pytest.approx(2 / 4)


def test_triplet_uses_euclidean_not_squared_distance() -> None:
    emb = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0], [1.0, 1.0]])
    pids = torch.tensor([0, 0, 1, 1])
    # anchor 0: pos 5, neg 1 -> 5 - 1 + 0.5 = 4.5 ; anchor 1: pos 5, neg min(sqrt(20), sqrt(13)) -> 5 - 3.6056 + 0.5
    # anchor 2: pos 1, neg 1 -> 0.5 ; anchor 3: pos 1, neg sqrt(2) -> 1 - 1.4142 + 0.5
    expected = (4.5 + (5.5 - math.sqrt(13)) + 0.5 + (1.5 - math.sqrt(2))) / 4
    assert losses.batch_hard_triplet(emb, pids, margin=0.5).item() == pytest.approx(expected, rel=1e-5)


def test_triplet_gradient_is_finite_with_identical_embeddings() -> None:
    emb = torch.zeros(4, 3, requires_grad=True)
    loss = losses.batch_hard_triplet(emb, torch.tensor([0, 0, 1, 1]), 1.0)
    loss.backward()
    assert torch.isfinite(emb.grad).all() and loss.item() == pytest.approx(1.0)


def test_extractor_loss_eq2() -> None:
    assert losses.extractor_loss(torch.tensor(2.0), torch.tensor(4.0), 0.9).item() == pytest.approx(2.2)


def test_identity_loss_eq3_is_mse() -> None:
    a = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert losses.identity_loss(a, b).item() == pytest.approx((0 + 4 + 1 + 1) / 4)


def test_sparsity_loss_eq4() -> None:
    masks = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]], [[[0.5, 0.5], [0.5, 0.5]]]])
    assert losses.sparsity_loss(masks).item() == pytest.approx((0.75 + 0.5) / 2)


def test_contiguity_loss_eq5_by_hand() -> None:
    m = torch.tensor([[0.0, 1.0, 1.0],
                      [0.0, 0.0, 1.0]]).view(1, 1, 2, 3)
    # vertical |M[i+1,j]-M[i,j]|: 0, 1, 0 -> 1 ; horizontal |M[i,j+1]-M[i,j]|: row0 1, 0 ; row1 0, 1 -> 2
    assert losses.contiguity_loss(m).item() == pytest.approx(3 / 6)
    constant = torch.full((3, 1, 4, 4), 0.7)
    assert losses.contiguity_loss(constant).item() == 0.0
    batch = torch.cat([m, torch.zeros_like(m)])
    assert losses.contiguity_loss(batch).item() == pytest.approx(3 / 6 / 2)


def test_mask_loss_eq6() -> None:
    value = losses.mask_loss(torch.tensor(0.2), torch.tensor(0.5), torch.tensor(0.1), lambda2=0.95)
    assert value.item() == pytest.approx(0.95 * 0.2 + 0.05 * (0.5 + 0.1))
    weighted = losses.mask_loss(torch.tensor(0.2), torch.tensor(0.5), torch.tensor(0.1), 0.95, sparsity_weight=0.5)
    assert weighted.item() == pytest.approx(0.95 * 0.2 + 0.05 * (0.25 + 0.1))
