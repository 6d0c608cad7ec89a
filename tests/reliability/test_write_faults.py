"""The writing rules every command shares: atomic files and sets of files, disk errors as one line, outputs
checked before the work, names and class lists that cannot escape or collide, and SIGTERM as a clean exit."""

from __future__ import annotations

import errno
import os
import signal

import pytest

from faults import load_script, one_error_line, run_main, small_disk, snapshot
from fcn_edge.atomic import atomic_files, write_errors, write_text_atomic
from fcn_edge.data.folder import read_classes
from fcn_edge.errors import FcnEdgeError, run_cli
from fcn_edge.sidecar import Sidecar


def test_a_set_of_files_is_all_new_or_all_old(tmp_path):
    targets = [tmp_path / "a.onnx", tmp_path / "a.onnx.json"]
    for target in targets:
        target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_files(targets) as staged:
            staged[targets[0]].write_text("new")
            raise KeyboardInterrupt  # Ctrl-C between the two files
    assert [t.read_text() for t in targets] == ["old", "old"] and sorted(tmp_path.iterdir()) == targets
    with atomic_files(targets) as staged:
        for target in targets:
            staged[target].write_text("new")
    assert [t.read_text() for t in targets] == ["new", "new"] and sorted(tmp_path.iterdir()) == targets


def test_a_full_disk_is_one_line_naming_the_file(tmp_path):
    with small_disk(tmp_path / "disk", "8k") as disk:
        with pytest.raises(FcnEdgeError, match=r"cannot write .*big.json: No space left on device; free some space"):
            write_text_atomic(disk / "big.json", "x" * 100_000)
        assert list(disk.iterdir()) == []
    with pytest.raises(OSError), write_errors("x"):  # errors that reading also raises stay what they are
        raise OSError(errno.ENOENT, "No such file or directory")


@pytest.mark.parametrize("case", ["output is a folder", "output under a file", "default engines/ is a file"])
def test_export_checks_its_output_before_exporting(tmp_path, monkeypatch, capsys, case):
    monkeypatch.chdir(tmp_path)  # the default output, engines/, is relative to the working folder
    (tmp_path / "model.pt").write_bytes(b"never read: the output is checked first")
    args = ["--checkpoint", "model.pt"]
    if case == "output is a folder":
        (tmp_path / "out.onnx").mkdir()
        args, fragments = [*args, "--output", "out.onnx"], ["--output", "is a folder"]
    elif case == "output under a file":
        (tmp_path / "notes.txt").write_text("a file")
        args, fragments = [*args, "--output", "notes.txt/m.onnx"], ["notes.txt is a file, not a folder"]
    else:
        (tmp_path / "engines").write_text("a file")
        fragments = ["engines is a file, not a folder"]
    before = snapshot(tmp_path)
    status, _, err = run_main(load_script("export_onnx").main, args, capsys)
    assert status == 2
    one_error_line(err, *fragments)
    assert snapshot(tmp_path) == before


def test_duplicate_or_empty_class_names_in_classes_txt_are_refused(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("road\ncar\nroad\n")
    with pytest.raises(FcnEdgeError, match=r"classes.txt names 'road' more than once"):
        read_classes(path)


def test_a_sidecar_with_a_bad_palette_gives_no_classes_not_a_crash(tmp_path):
    artifact = tmp_path / "m.int8.engine"
    (tmp_path / "m.int8.engine.json").write_text('{"model": {"classes": ["a", "b"], "palette": [[0, 0, 0], [300, 0, 0]]}}')
    assert Sidecar.beside(artifact).classes() == (None, None)
    (tmp_path / "m.int8.engine.json").write_text('{"model": {"classes": ["a", "b"], "palette": [[0, 0, 0], [9, 9, 9]]}}')
    assert Sidecar.beside(artifact).classes() == (["a", "b"], [(0, 0, 0), (9, 9, 9)])


def test_sigterm_and_running_out_of_memory_are_clean_exits(capsys):
    @run_cli
    def terminated(argv):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM should have stopped the command")

    @run_cli
    def greedy(argv):
        raise MemoryError

    handler = signal.getsignal(signal.SIGTERM)
    assert terminated([]) == 143 and capsys.readouterr().err == "terminated\n"
    assert signal.getsignal(signal.SIGTERM) == handler  # put back for whoever called
    assert greedy([]) == 2
    one_error_line(capsys.readouterr().err, "out of memory")
