"""The segcontrast logger of a tool: every record once on the console and once in log.txt,
records from before the folder is known included, and the logger as it was afterwards."""

import logging

from segcontrast.engine.logging_setup import segcontrast_logging, setup_segcontrast_logging


def test_early_records_are_shown_once_the_folder_is_known(tmp_path, capsys):
    logger = logging.getLogger("segcontrast.config")
    before = logging.getLogger("segcontrast").handlers[:]
    with segcontrast_logging():
        logger.info("a note from before the folder is known")
        assert "a note" not in capsys.readouterr().out  # held, not lost
        setup_segcontrast_logging(tmp_path)
        logger.warning("a later note")
    out = capsys.readouterr().out
    log = (tmp_path / "log.txt").read_text()
    for text in (out, log):
        assert text.count("a note from before the folder is known") == 1
        assert text.count("a later note") == 1
        assert text.count("SegContrast uses detectron2") == 1
    assert logging.getLogger("segcontrast").handlers == before
    logger.info("after the run")
    assert "after the run" not in (tmp_path / "log.txt").read_text()


def test_a_second_setup_with_another_folder_does_not_add_a_second_console(tmp_path, capsys):
    logger = logging.getLogger("segcontrast.data")
    with segcontrast_logging():
        setup_segcontrast_logging(tmp_path / "a")
        setup_segcontrast_logging(tmp_path / "b")
        setup_segcontrast_logging(tmp_path / "b")
        logger.info("one record")
    assert capsys.readouterr().out.count("one record") == 1
    assert "one record" not in (tmp_path / "a" / "log.txt").read_text()
    assert (tmp_path / "b" / "log.txt").read_text().count("one record") == 1
    # A later run in the same process (same folder) logs again, to the stdout of now.
    with segcontrast_logging():
        setup_segcontrast_logging(tmp_path / "b")
        logger.info("second run")
    assert capsys.readouterr().out.count("second run") == 1


def test_other_ranks_write_their_own_file_and_nothing_on_the_console(tmp_path, capsys):
    with segcontrast_logging():
        setup_segcontrast_logging(tmp_path, distributed_rank=1, announce=False)
        logging.getLogger("segcontrast.engine").info("from rank 1")
    assert "from rank 1" not in capsys.readouterr().out
    assert "from rank 1" in (tmp_path / "log.txt.rank1").read_text()
    assert not (tmp_path / "log.txt").exists()


def test_a_run_inside_a_process_already_set_up_does_not_double_the_console(tmp_path, capsys):
    logger = logging.getLogger("segcontrast.data")
    root = logging.getLogger("segcontrast")
    before = (root.handlers[:], root.level, root.propagate)
    with segcontrast_logging():  # stands for a process whose own setup came first
        setup_segcontrast_logging(tmp_path / "outer")
        with segcontrast_logging():
            setup_segcontrast_logging(tmp_path / "inner")
            logger.info("inside the inner run")
        logger.info("back in the outer run")
    out = capsys.readouterr().out
    assert out.count("inside the inner run") == 1 and out.count("back in the outer run") == 1
    assert "inside the inner run" not in (tmp_path / "outer" / "log.txt").read_text()
    assert "back in the outer run" in (tmp_path / "outer" / "log.txt").read_text()
    assert (root.handlers, root.level, root.propagate) == before
