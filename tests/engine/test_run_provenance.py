"""A run folder's provenance: invocations.yaml (each `python run.py` that trained there, with
its overrides) and run.log (what it printed, as plain lines), kept across a resume."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
import yaml
from helpers import FAST, TINY_MODELS, run_folder_of, run_in_process

from agr_suite.engine.loggers import Progress
from agr_suite.engine.run_folder import RunFolder


class Terminal(io.StringIO):
    """What a terminal receives: a stream that says it is one (rich draws its bar on it)."""

    def isatty(self) -> bool:
        return True


def log_lines(folder: RunFolder) -> list[str]:
    return folder.log.read_text().splitlines()


def test_a_progress_bar_leaves_plain_lines_in_the_log(tmp_path, monkeypatch):
    """The engine's progress bar (rich, on a terminal) redraws its line many times; the log
    gets the lines the run printed and the bar's last state, each once, with no escape codes
    or carriage returns, while the terminal gets the bar as drawn."""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    folder = RunFolder(tmp_path / "run")
    with folder.output_logged("python run.py a=1"):
        progress = Progress(enabled=True, total_epochs=2)
        for epoch in range(2):
            progress.start_epoch(epoch, batches=40)
            for _ in range(40):
                progress.update("loss 0.5")
            progress.line(f"epoch {epoch + 1}/2 train_loss 0.5")
        progress.close()
    drawn = terminal.getvalue()
    assert "\x1b[" in drawn and drawn.count("\r") > 2  # a bar, redrawn, on the terminal
    lines = log_lines(folder)
    assert lines[0].startswith("--- ") and lines[0].endswith(" python run.py a=1")
    assert lines.count("epoch 1/2 train_loss 0.5") == 1
    assert lines.count("epoch 2/2 train_loss 0.5") == 1
    assert lines.index("epoch 1/2 train_loss 0.5") < lines.index("epoch 2/2 train_loss 0.5")
    bar = lines[3:]
    assert len(bar) == 1 and "40/40" in bar[0]  # the finished bar, once
    assert not any("\x1b" in line or "\r" in line for line in lines)


@pytest.mark.parametrize(
    "written, expected",
    [
        ("plain\n", ["plain"]),
        ("a\r\n", ["a"]),  # a Windows line end
        (" 10%\r 50%\r100%\n", ["100%"]),  # tqdm-style redraws
        ("abcdef\rXY\n", ["XYcdef"]),  # a carriage return moves the cursor, erases nothing
        ("abcdef\r\x1b[2KXY\n", ["XY"]),  # ... erase-line does
        ("abcdef\rXY\x1b[K\n", ["XY"]),  # erase to the end of the line
        ("\x1b[1;36m2\x1b[0m/\x1b[1;36m3\x1b[0m\n", ["2/3"]),  # colours
        ("\x1b]8;id=1;https://x\x1b\\link\x1b]8;;\x1b\\\n", ["link"]),  # a hyperlink (OSC 8)
        ("ab\bc\n", ["ac"]),  # backspace
        ("one\ntwo\n\nthree", ["one", "two", "", "three"]),  # an unfinished last line kept
    ],
)
def test_terminal_output_becomes_the_lines_a_terminal_shows(
    tmp_path, monkeypatch, written, expected
):
    for name, pieces in [("whole", [written]), ("split", _split(written))]:
        terminal = Terminal()
        monkeypatch.setattr(sys, "stdout", terminal)
        folder = RunFolder(tmp_path / name)
        with folder.output_logged("t"):
            for piece in pieces:
                print(piece, end="")
        assert terminal.getvalue() == written  # the terminal gets it unchanged
        assert log_lines(folder)[1:] == expected, name


def _split(text: str) -> list[str]:
    """``text`` a character per write, an escape code kept whole (one write, as rich and
    tqdm write them): CSI ``ESC [ ... <@-~>``, OSC ``ESC ] ... ESC \\``."""
    pieces, i = [], 0
    while i < len(text):
        if text.startswith("\x1b]", i):
            end = text.index("\x1b\\", i) + 2
        elif text.startswith("\x1b[", i):
            end = next(j for j in range(i + 2, len(text)) if "@" <= text[j] <= "~") + 1
        else:
            end = i + 1
        pieces.append(text[i:end])
        i = end
    return pieces


def test_stderr_warnings_logging_and_the_error_that_ends_a_run_are_logged(tmp_path, monkeypatch):
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    handler = logging.StreamHandler(sys.stdout)  # as Hydra's job logging binds its stream
    logger = logging.getLogger("agr_test_provenance")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    folder = RunFolder(tmp_path)
    try:
        with pytest.raises(RuntimeError), folder.output_logged("first"):
            print("to stdout")
            print("to stderr", file=sys.stderr)
            logger.info("a logged line")
            raise RuntimeError("boom")
    finally:
        logger.removeHandler(handler)
    assert handler.stream is out  # given back
    assert sys.stdout is out and sys.stderr is err
    assert out.getvalue() == "to stdout\na logged line\n" and err.getvalue() == "to stderr\n"
    text = folder.log.read_text()
    assert "to stdout\nto stderr\na logged line\nTraceback (most recent call last):" in text
    assert text.rstrip().endswith("RuntimeError: boom")
    with pytest.raises(SystemExit), folder.output_logged("second"):
        sys.exit(2)
    lines = log_lines(folder)
    assert [line for line in lines if line.startswith("--- ")][-1].endswith(" second")
    assert lines[-1] == "exit status 2"  # appended: the first invocation's lines stay
    assert "RuntimeError: boom" in lines


def test_a_disabled_log_writes_nothing(tmp_path):
    """The DDP ranks but the first: no run.log, no folder, output untouched."""
    folder = RunFolder(tmp_path / "run")
    stdout = sys.stdout
    with folder.output_logged("t", enabled=False):
        assert sys.stdout is stdout
        print("rank 1")
    assert not folder.path.exists()


def test_invocations_accumulate_as_one_yaml_list(tmp_path):
    folder = RunFolder(tmp_path)
    folder.record_invocation(["model=vit", "paths.runs='/a b'"], started=0.0)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    folder.record_invocation(["model=vit"], started=86400.0)
    assert yaml.safe_load(folder.invocations.read_text()) == [
        {
            "started": "1970-01-01T00:00:00Z",
            "overrides": ["model=vit", "paths.runs='/a b'"],
            "resumed": False,
        },
        {"started": "1970-01-02T00:00:00Z", "overrides": ["model=vit"], "resumed": True},
    ]


def test_a_run_and_its_resume_keep_both_invocations(tmp_path):
    """run.py records its overrides and logs its output; a second run in the same folder (a
    resume) adds its own after them; a skipped run (already completed) adds nothing."""
    args = [*FAST, "trainer.epochs=1", f"paths.runs={tmp_path}", "model=vit", *TINY_MODELS["vit"]]
    first = run_in_process(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    folder = RunFolder(run_folder_of(args))
    (entry,) = yaml.safe_load(folder.invocations.read_text())
    assert entry["overrides"] == args and entry["resumed"] is False
    lines = log_lines(folder)
    assert lines[0].endswith("python run.py " + " ".join(args))
    printed = [line for line in first.stdout.splitlines() if line.startswith("epoch ")]
    assert printed and all(line in lines for line in printed)
    # cut short after its checkpoint: the run resumes from it on the next invocation
    results = json.loads(folder.results.read_text())
    folder.results.write_text(json.dumps({**results, "status": "running"}))
    second = run_in_process(args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    entries = yaml.safe_load(folder.invocations.read_text())
    assert [e["resumed"] for e in entries] == [False, True]
    assert entries[0] == entry
    again = log_lines(folder)
    assert again[: len(lines)] == lines  # the first invocation's log is kept
    assert sum(line.startswith("--- ") for line in again) == 2
    before = (folder.invocations.read_bytes(), folder.log.read_bytes())
    skipped = run_in_process(args, cwd=tmp_path)
    assert skipped.returncode == 0 and "already completed" in skipped.stdout
    assert (folder.invocations.read_bytes(), folder.log.read_bytes()) == before
