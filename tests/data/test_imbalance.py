import collections

import numpy as np
import pytest
import torch

from ferlab.data import balanced_sampler, class_weights, oversample_indices
from ferlab.errors import FerlabError

TARGETS = [0] * 80 + [1] * 15 + [2] * 5  # 16:1, like happy vs disgust in FER2013


def test_inverse_weights_match_hand_computed_values():
    expected = torch.tensor([100 / (3 * 80), 100 / (3 * 15), 100 / (3 * 5)])
    torch.testing.assert_close(class_weights(TARGETS, 3, "inverse"), expected)


def test_effective_number_weights():
    beta = 0.99
    effective = (1 - beta) / (1 - np.power(beta, [80, 15, 5]))
    expected = effective * 3 / effective.sum()
    weights = class_weights(TARGETS, 3, "effective", beta=beta)
    torch.testing.assert_close(weights, torch.tensor(expected, dtype=torch.float32))
    assert weights[0] < weights[1] < weights[2]
    assert (weights[2] / weights[0]) < (class_weights(TARGETS, 3)[2] / class_weights(TARGETS, 3)[0])


def test_sampler_draws_classes_about_equally():
    sampler = balanced_sampler(TARGETS, 3, seed=0)
    drawn = collections.Counter()
    for epoch in range(30):
        sampler.set_epoch(epoch)
        drawn.update(TARGETS[i] for i, _ in sampler)
    shares = np.array([drawn[c] for c in range(3)]) / sum(drawn.values())
    np.testing.assert_allclose(shares, 1 / 3, atol=0.03)


def test_oversampling_equalises_counts_and_keeps_every_original():
    indices = oversample_indices(TARGETS, 3, seed=0)
    counts = collections.Counter(TARGETS[i] for i in indices)
    assert counts == {0: 80, 1: 80, 2: 80}
    assert set(range(len(TARGETS))) <= set(indices.tolist())


def test_a_class_without_samples_is_named():
    with pytest.raises(FerlabError, match=r"no training samples \(class indices \[1\]\)"):
        class_weights([0, 0, 2], 3)


def test_epoch_sampler_order_depends_on_seed_and_epoch_only():
    from ferlab.data.sampling import EpochSampler

    def order(seed, epoch):
        sampler = EpochSampler(range(50), seed)
        sampler.set_epoch(epoch)
        return [i for i, _ in sampler]

    assert sorted(order(0, 3)) == list(range(50))
    assert order(0, 3) == order(0, 3) and order(0, 3) != order(0, 4) and order(0, 3) != order(1, 3)
