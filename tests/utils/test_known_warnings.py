"""Exactly the known harmless third-party warnings are filtered, nothing else."""

import logging
import warnings

from segcontrast.utils.known_warnings import (
    KNOWN_LOG_MESSAGES,
    KNOWN_WARNINGS,
    ignore_known_warnings,
    quiet_known_warnings,
)

# The texts as torch 2.14 and Detectron2 v0.6 print them.
SEEN = [
    ("`torch.jit.script` is deprecated. Please switch to `torch.compile` or `torch.export`.",
     FutureWarning),
    ("torch.meshgrid: in an upcoming release, it will be required to pass the indexing argument. "
     "(Triggered internally at aten/src/ATen/native/TensorShape.cpp:4221.)", UserWarning),
    ("The given NumPy array is not writable, and PyTorch does not support non-writable tensors.",
     UserWarning),
]
NOT_KNOWN = [
    ("`torch.jit.trace` is deprecated.", FutureWarning),  # another message
    ("`torch.jit.script` is deprecated. Please switch to `torch.compile`.", DeprecationWarning),
    ("something the user should read", UserWarning),
]


def _shown(block) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        block()
        for message, category in SEEN + NOT_KNOWN:
            warnings.warn(message, category, stacklevel=1)
    return [str(w.message) for w in caught]


def test_the_list_has_a_reason_for_each_entry():
    assert len(KNOWN_WARNINGS) == len(SEEN)
    assert all(len(k.why) > 40 for k in (*KNOWN_WARNINGS, *KNOWN_LOG_MESSAGES))


def test_only_the_known_warnings_are_hidden():
    shown = _shown(ignore_known_warnings)
    assert shown == [message for message, _ in NOT_KNOWN]
    assert len(_shown(lambda: None)) == len(SEEN + NOT_KNOWN)  # filters were scoped above


def test_quiet_block_restores_the_filters():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_known_warnings():
            warnings.warn(SEEN[0][0], SEEN[0][1], stacklevel=1)
        warnings.warn(SEEN[0][0], SEEN[0][1], stacklevel=1)
    assert len(caught) == 1


def test_the_known_torch_log_record_is_dropped_and_no_other(caplog):
    ignore_known_warnings()
    torch_logger = logging.getLogger("torch.utils.cpp_extension")
    with caplog.at_level(logging.WARNING, logger="torch.utils.cpp_extension"):
        torch_logger.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local")
        torch_logger.warning("Something else about CUDA_HOME")
    assert [r.getMessage() for r in caplog.records] == ["Something else about CUDA_HOME"]
