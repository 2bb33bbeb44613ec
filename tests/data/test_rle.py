"""The project's one RLE decoder (segcontrast.data.rle) against pycocotools, the reference."""

import numpy as np
import pycocotools.mask as mask_util
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from segcontrast.data.rle import RLEError, check_rle, rle_counts_to_runs


def rle_counts_from_string(counts):
    return rle_counts_to_runs([counts])[0].tolist()


def _runs_of(mask: np.ndarray) -> list[int]:
    """Run lengths of a mask in column-major order, starting with background (reference)."""
    flat = mask.flatten(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], edges, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat.size and flat[0] == 1 else runs


def _random_mask(seed: int, height: int, width: int, density: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asfortranarray((rng.random((height, width)) < density).astype(np.uint8))


@pytest.mark.parametrize("seed", range(8))
def test_compressed_counts_decode_to_pycocotools_runs(seed):
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(1, 70)), int(rng.integers(1, 70))
    mask = _random_mask(seed, height, width, float(rng.choice([0.0, 0.02, 0.5, 0.98, 1.0])))
    rle = mask_util.encode(mask)
    runs = rle_counts_from_string(rle["counts"].decode("ascii"))
    assert runs == _runs_of(mask)
    checked = check_rle({"size": [height, width], "counts": rle["counts"].decode()},
                        height, width)
    assert checked.area == int(mask.sum()) == int(mask_util.area(rle))


def test_large_runs_round_trip():
    # Runs far above 2**16 need several characters per number and exercise the sign bit.
    mask = np.zeros((600, 700), dtype=np.uint8, order="F")
    mask[599, 699] = 1
    mask[0:3, 0] = 1
    rle = mask_util.encode(mask)
    assert rle_counts_from_string(rle["counts"].decode()) == _runs_of(mask)


def test_uncompressed_counts_are_compressed_like_pycocotools():
    mask = _random_mask(3, 17, 23, 0.3)
    runs = _runs_of(mask)
    checked = check_rle({"size": [17, 23], "counts": runs}, 17, 23)
    reference = mask_util.frPyObjects({"size": [17, 23], "counts": runs}, 17, 23)
    assert checked.rle["counts"] == reference["counts"].decode()
    assert isinstance(checked.rle["counts"], str)
    assert (mask_util.decode({"size": [17, 23], "counts": checked.rle["counts"]}) == mask).all()


@pytest.mark.parametrize(
    "counts, code",
    [
        ("P", "rle_malformed"),  # continuation bit set on the last character
        ("0~", "rle_malformed"),  # outside the alphabet
        ("ooooooooo0", "rle_malformed"),  # a number longer than 7 characters
        ("1", "rle_malformed"),  # adds up to 1 pixel, not 12
        ("", "rle_malformed"),
        ([3, -1, 10], "rle_malformed"),
        ([3.0, 9], "rle_malformed"),
        ([5, 5], "rle_malformed"),  # 10 != 12
        (None, "rle_malformed"),
        (17, "rle_malformed"),
    ],
)

def test_malformed_counts_are_refused(counts, code):
    with pytest.raises(RLEError) as info:
        check_rle({"size": [3, 4], "counts": counts}, 3, 4)
    assert info.value.code == code


@pytest.mark.parametrize("size", [[4, 3], [3], "3x4", None, [3.0, 4], [True, 4]])
def test_bad_or_mismatched_size(size):
    with pytest.raises(RLEError) as info:
        check_rle({"size": size, "counts": [12]}, 3, 4)
    expected = "rle_size_mismatch" if size == [4, 3] else "rle_malformed"
    assert info.value.code == expected


def test_negative_difference_is_refused():
    # A later run stored as a difference that makes it negative: pycocotools would wrap it
    # around to a huge unsigned count and write past its buffer.
    assert rle_counts_from_string("020") == [0, 2, 0]
    assert rle_counts_from_string("0202") == [0, 2, 0, 4]  # the fourth is 2 + 2
    with pytest.raises(RLEError):
        rle_counts_from_string("020M")  # 'M' is -3: the fourth run would be 2 - 3


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=130), max_size=30))
def test_any_string_is_parsed_or_refused_never_crashes(text):
    try:
        runs = rle_counts_from_string(text)
    except RLEError:
        return
    assert all(0 <= r <= 2**32 - 1 for r in runs)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 2**31 - 1))
def test_random_masks_round_trip(height, width, seed):
    mask = _random_mask(seed, height, width, 0.4)
    counts = mask_util.encode(mask)["counts"].decode()
    checked = check_rle({"size": [height, width], "counts": counts}, height, width)
    assert checked.area == int(mask.sum())
    assert rle_counts_from_string(counts) == _runs_of(mask)


def test_many_masks_at_once_equal_one_by_one_and_errors_name_the_mask():
    masks = [_random_mask(seed, 7, 5, 0.4) for seed in range(5)] + [np.zeros((7, 5), np.uint8)]
    counts = [mask_util.encode(np.asfortranarray(m))["counts"] for m in masks]
    runs, offsets = rle_counts_to_runs(counts)
    for i, mask in enumerate(masks):
        assert runs[offsets[i] : offsets[i + 1]].tolist() == _runs_of(mask)
    with pytest.raises(RLEError, match="mask 2: .* end in the middle"):
        rle_counts_to_runs([counts[0], counts[1], b"0g"])
