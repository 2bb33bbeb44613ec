"""How score_files splits the images into the workers' tasks."""

import pytest
from segcontrast.evaluation.score_files import _split_into_tasks


@pytest.mark.parametrize("images,workers", [(1, 2), (9, 2), (60, 3), (200, 2), (5000, 2),
                                            (5000, 8), (12345, 4)])
def test_tasks_hold_every_image_once_large_first_small_last(images, workers):
    image_ids = [f"id{i}" for i in range(images)]
    tasks = _split_into_tasks(image_ids, workers)
    assert [i for t in tasks for i in t] == image_ids
    sizes = [len(t) for t in tasks]
    assert sizes[:-1] == sorted(sizes[:-1], reverse=True)  # the last holds what is left
    assert max(sizes) <= 64 and min(sizes[:-1], default=8) >= 8
    # no task holds more than a quarter of a worker's share of what is left (or 8 images):
    # the workers finish together
    left = images
    for size in sizes:
        assert size <= max(8, left // (4 * workers))
        left -= size


def test_small_workloads_keep_several_tasks_per_worker_and_large_ones_few_tasks():
    two_hundred = [len(t) for t in _split_into_tasks(list(range(200)), 2)]
    assert len(two_hundred) >= 16 and max(two_hundred) <= 25
    assert len(_split_into_tasks(list(range(5000)), 2)) < 100  # was 625 tasks of 8
