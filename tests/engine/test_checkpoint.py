"""Checkpoints: atomic saves, safe loads, and eval-only's refusal of weights that do not fit."""

import os
import pickle

import pytest
import torch
from segcontrast.engine.checkpoint import (
    SafeDetectionCheckpointer,
    UnsafeWeightsError,
    WeightsError,
    load_weights_for_eval,
)


class TinyNet(torch.nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, width, 3)
        self.head = torch.nn.Linear(width, 2)


def test_save_writes_checkpoint_and_tags_it(tmp_path):
    model = TinyNet()
    SafeDetectionCheckpointer(model, str(tmp_path)).save("model_0000009", iteration=9)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    loaded = torch.load(tmp_path / "model_0000009.pth", weights_only=True)
    assert loaded["iteration"] == 9
    assert torch.equal(loaded["model"]["conv.weight"], model.conv.weight)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_interrupted_save_never_becomes_last_checkpoint(tmp_path, monkeypatch):
    model = TinyNet()
    checkpointer = SafeDetectionCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000009")

    def crash_half_way(data, f):
        f.write(b"partial bytes of a checkpoint")
        raise KeyboardInterrupt("killed during save")

    monkeypatch.setattr(torch, "save", crash_half_way)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_0000019")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert not (tmp_path / "model_0000019.pth").exists()
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000009.pth"]


class _RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pth_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "payload": _RunsCodeWhenUnpickled()}, path)
    checkpointer = SafeDetectionCheckpointer(TinyNet())
    with pytest.raises(UnsafeWeightsError, match="weights_only=True"):
        checkpointer.load(str(path))


def test_pkl_outside_model_zoo_needs_explicit_permission(tmp_path):
    model = TinyNet()
    path = tmp_path / "weights.pkl"
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    with open(path, "wb") as f:
        pickle.dump({"model": state, "__author__": "test"}, f)
    with pytest.raises(UnsafeWeightsError, match="--allow-unsafe-pickle"):
        SafeDetectionCheckpointer(TinyNet()).load(str(path))
    other = TinyNet()
    SafeDetectionCheckpointer(other, allow_unsafe_pickle=True).load(str(path))
    assert torch.equal(other.conv.weight, model.conv.weight)


def test_eval_weights_must_be_given_exist_and_fit(tmp_path):
    with pytest.raises(WeightsError, match="MODEL.WEIGHTS is empty"):
        load_weights_for_eval(TinyNet(), "")
    with pytest.raises(WeightsError, match="no such file"):
        load_weights_for_eval(TinyNet(), str(tmp_path / "missing.pth"))

    wrong_shape = tmp_path / "wide.pth"
    torch.save({"model": TinyNet(width=8).state_dict()}, wrong_shape)
    with pytest.raises(WeightsError, match="another shape"):
        load_weights_for_eval(TinyNet(), str(wrong_shape))

    partial = tmp_path / "partial.pth"
    torch.save({"model": {"conv.weight": TinyNet().conv.weight.detach()}}, partial)
    with pytest.raises(WeightsError, match="3 of the model's 4 parameters are not in the file"):
        load_weights_for_eval(TinyNet(), str(partial))

    trained = TinyNet()
    good = tmp_path / "good.pth"
    torch.save({"model": trained.state_dict()}, good)
    fresh = TinyNet()
    load_weights_for_eval(fresh, str(good))
    assert torch.equal(fresh.head.weight, trained.head.weight)
