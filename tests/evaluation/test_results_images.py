"""How a results file names its images (segcontrast.evaluation.results_images): files that name
them by id keep being read by id on the datasets where ids and file names look alike (no false
alarm), and only one complete reading is ever taken without asking."""

from segcontrast.evaluation.results_images import choose_matching


def _results(image_ids, file_names=None):
    names = file_names or [None] * len(image_ids)
    return [{"image_id": i, **({"file_name": n} if n else {})}
            for i, n in zip(image_ids, names, strict=True)]


def _choice(image_ids, gt_names, file_names=None):
    images = dict.fromkeys(gt_names, (4, 4))
    return choose_matching(_results(image_ids, file_names), images, gt_names)


def test_ids_are_read_as_ids_where_the_file_names_agree_or_say_nothing():
    coco = {9: "000000000009.jpg", 25: "000000000025.jpg"}  # COCO: stems are no ids
    assert _choice([9, 25, 9], coco) == _choice([], coco)
    same = {1: "1.jpg", 2: "2.jpg", 3: "3.jpg"}  # every stem is its own image's id
    choice = _choice([1, 2, 3], same, ["1.jpg", "2.jpg", "3.jpg"])
    assert not choice.by_file_name and not choice.refusal and not choice.warning
    # ids from 1, files from 0.jpg: id 3 is no stem, so the ids are the one complete reading
    offset = {1: "0.jpg", 2: "1.jpg", 3: "2.jpg"}
    choice = _choice([1, 2, 3], offset)
    assert not choice.by_file_name and not choice.refusal and not choice.contradictions


def test_a_complete_file_reading_is_taken_only_where_the_ids_fail_or_the_files_agree():
    offset = {1: "0.jpg", 2: "1.jpg", 3: "2.jpg"}
    assert _choice([0, 1, 2], offset).by_file_name  # stem 0 is no id
    both = _choice([1, 2], offset)  # ids 1 and 2, or stems of images 2 and 3: nobody can tell
    assert both.refusal and not both.by_file_name
    assert "image_id 1 is the id of image 1 ('0.jpg') but the file stem of image 2 ('1.jpg')" \
        in both.refusal
    # the file names settle it when they agree with the stems (Ultralytics 8.3 writes both)
    told = _choice([1, 2], offset, ["a/1.jpg", "a/2.jpg"])
    assert told.by_file_name and not told.refusal
    # ...and contradict the ids without the stems' support: refused, naming each result
    other = {1: "x.png", 2: "y.png", 3: "z.png"}
    refused = _choice([1, 2, 3], other, ["y.png", "x.png", "z.png"])
    assert refused.refusal and not refused.by_file_name
    contradicted = _choice([1, 2, 3], other, ["y.png", "nowhere.png", "z.png"])
    assert [i for i, _ in contradicted.contradictions] == [0]
    assert "image_id 1 is image 1 ('x.png') but the result's file_name 'y.png' is image 2" \
        in contradicted.contradictions[0][1]


def test_names_two_images_share_name_neither():
    shared = {1: "a/5.png", 2: "b/5.png", 3: "c/6.png"}
    choice = _choice([5, 6], shared)
    assert not choice.by_file_name and not choice.refusal  # neither reading finds every image
