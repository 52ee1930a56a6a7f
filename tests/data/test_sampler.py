import torch

from refseg.data.sampler import ImageGroupedSampler, image_indices_of


def test_rows_of_one_image_are_consecutive_and_every_row_comes_once():
    image_ids = [7, 3, 7, 5, 3, 7, 9]
    sampler = ImageGroupedSampler(image_ids, seed=0)
    order = list(sampler)
    assert sorted(order) == list(range(len(image_ids))) and len(sampler) == 7
    seen = [image_ids[i] for i in order]
    runs = [seen[0]] + [b for a, b in zip(seen, seen[1:]) if b != a]
    assert sorted(runs) == [3, 5, 7, 9]  # each image appears as one run


def test_order_depends_on_seed_and_epoch_and_is_reproducible():
    image_ids = list(range(50))
    a, b = ImageGroupedSampler(image_ids, seed=1), ImageGroupedSampler(image_ids, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(ImageGroupedSampler(image_ids, seed=2)) != first


def test_image_indices_of_deduplicates_in_first_seen_order():
    assert image_indices_of(["a", "a", "b", "a"]) == ([0, 2], [0, 0, 1, 0])
    assert image_indices_of([]) == ([], [])
    rows, indices = image_indices_of([(1, 5), (2, 5), (1, 5)])
    assert rows == [0, 1] and indices == [0, 1, 0]
    assert torch.equal(torch.tensor(indices), torch.tensor([0, 1, 0]))
