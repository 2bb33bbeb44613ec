"""Weights files: the classes a checkpoint carries, and clear errors for what is not one."""

import urllib.error
import urllib.request

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from segcontrast.engine.checkpoint import (
    SafeDetectionCheckpointer,
    WeightsError,
    check_weights_file,
    load_weights_for_eval,
    local_weights_file,
)
from segcontrast.engine.class_metadata import (
    CHECKPOINT_KEY,
    ClassMetadata,
    ClassMetadataError,
    check_weights_match_dataset,
    choose_prediction_classes,
)

FRUIT = ClassMetadata(("date", "fig", "kiwi"), (3, 5, 9), ("fruit_train",))


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)


@pytest.fixture
def registered():
    """Register metadata-only datasets by name; removed afterwards."""
    names = []

    def register(name, classes, ids):
        DatasetCatalog.register(name, list)
        MetadataCatalog.get(name).set(
            thing_classes=list(classes),
            thing_dataset_id_to_contiguous_id={i: k for k, i in enumerate(ids)})
        names.append(name)
        return name

    yield register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_checkpoints_carry_the_classes_and_eval_loading_returns_them(tmp_path):
    model = TinyNet()
    SafeDetectionCheckpointer(model, str(tmp_path), class_metadata=FRUIT).save("model_final")
    stored = torch.load(tmp_path / "model_final.pth", weights_only=True)[CHECKPOINT_KEY]
    assert stored == {"thing_classes": ["date", "fig", "kiwi"], "dataset_ids": [3, 5, 9],
                      "datasets": ["fruit_train"]}
    classes = load_weights_for_eval(TinyNet(), str(tmp_path / "model_final.pth"), num_classes=3)
    assert (classes.thing_classes, classes.dataset_ids) == (FRUIT.thing_classes, (3, 5, 9))
    assert [classes.to_dataset_id(k) for k in range(3)] == [3, 5, 9]
    with pytest.raises(WeightsError, match=r"trained on 3 classes \(3 date, 5 fig, 9 kiwi\).*"
                                           r"the config.s model has 4 \(MODEL.ROI_HEADS"):
        load_weights_for_eval(TinyNet(), str(tmp_path / "model_final.pth"), num_classes=4)
    # Weights saved by other programs carry none.
    torch.save({"model": model.state_dict()}, tmp_path / "plain.pth")
    assert load_weights_for_eval(TinyNet(), str(tmp_path / "plain.pth")) is None


def test_prediction_classes_come_from_the_weights_unless_a_dataset_is_named(registered):
    chosen = choose_prediction_classes(3, from_weights=FRUIT)
    assert chosen is FRUIT
    other = registered("other_fruit_val", ["apple", "pear", "plum"], [10, 20, 30])
    chosen = choose_prediction_classes(3, from_weights=FRUIT, override=other)
    assert (chosen.thing_classes, chosen.dataset_ids) == (("apple", "pear", "plum"), (10, 20, 30))
    with pytest.raises(ClassMetadataError, match="--metadata never_registered: no dataset"):
        choose_prediction_classes(3, from_weights=FRUIT, override="never_registered")
    two = registered("two_classes_val", ["apple", "pear"], [10, 20])
    with pytest.raises(ClassMetadataError, match="has 2 classes.*the config.s model has 3"):
        choose_prediction_classes(3, from_weights=FRUIT, override=two)
    with pytest.raises(ClassMetadataError, match="has 3 classes.*the config.s model has 2"):
        choose_prediction_classes(2, from_weights=FRUIT)
    # Without any source: placeholders, ids 0..K-1.
    chosen = choose_prediction_classes(2, from_weights=None, config_datasets=("not_there",))
    assert (chosen.thing_classes, chosen.dataset_ids) == (("class_0", "class_1"), (0, 1))


def test_evaluating_weights_on_a_dataset_with_another_class_count_is_refused(registered):
    two = registered("two_classes_test", ["apple", "pear"], [10, 20])
    with pytest.raises(ClassMetadataError, match="trained on 3 classes.*has 2"):
        check_weights_match_dataset(FRUIT, two)
    same = registered("fruit_test", ["date", "fig", "kiwi"], [3, 5, 9])
    check_weights_match_dataset(FRUIT, same)
    check_weights_match_dataset(None, two)


def test_a_text_file_is_not_a_checkpoint(tmp_path):
    notes = tmp_path / "notes.pth"
    notes.write_text("this is a text file\n")
    with pytest.raises(WeightsError, match=f"{notes} is not a PyTorch checkpoint"):
        check_weights_file(str(notes))
    with pytest.raises(WeightsError, match=f"{notes} is not a PyTorch checkpoint"):
        load_weights_for_eval(TinyNet(), str(notes))
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match="is empty"):
        SafeDetectionCheckpointer(TinyNet()).load(str(empty))
    # Starts like a zip archive but is none: torch's own error becomes a WeightsError.
    fake_zip = tmp_path / "fake.pth"
    fake_zip.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(WeightsError, match="is not a PyTorch checkpoint, or it is damaged"):
        load_weights_for_eval(TinyNet(), str(fake_zip))


def test_a_url_that_cannot_be_downloaded_says_so_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path))

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlretrieve", no_network)
    with pytest.raises(WeightsError) as info:
        local_weights_file("detectron2://ImageNetPretrained/MSRA/R-50.pkl")
    message = str(info.value)
    for fragment in ("detectron2://ImageNetPretrained/MSRA/R-50.pkl",
                     "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl",
                     "Temporary failure in name resolution", "network connection",
                     "local file", 'MODEL.WEIGHTS ""'):
        assert fragment in message
    with pytest.raises(WeightsError, match="cannot download"):
        SafeDetectionCheckpointer(TinyNet()).load("https://example.invalid/model.pth")
    with pytest.raises(WeightsError, match="no such file"):
        local_weights_file(str(tmp_path / "missing.pth"))
