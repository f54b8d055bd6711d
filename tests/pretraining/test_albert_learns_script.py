"""scripts/albert_learns.py: a run passes only when its last evaluation beats the majority
token's share by 1.5x and the training unigram's loss on the test targets by 0.3 nats
(numbers chosen by hand on either side of each floor)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts import albert_learns  # noqa: E402


def write_run(folder: Path, evaluations: list[tuple[float, float]], status="completed") -> Path:
    """A run folder whose evaluations have (MLM accuracy, MLM loss), with a majority share of
    6% (floor 9%), a training unigram's loss of 5.5 nats (floor 5.2) and a lower test-target
    entropy (5.0, not a floor)."""
    folder.mkdir(parents=True)
    rows = [
        {
            "epoch": i + 1, "step": 100 * (i + 1), "mlm_acc": acc, "mlm_loss": loss,
            "mlm_acc_majority": 6.0, "mlm_loss_unigram": 5.5, "mlm_acc_label_entropy": 5.0,
            "mlm_acc_pred_classes": 7, "sop_acc": 51.0,
        }
        for i, (acc, loss) in enumerate(evaluations)
    ]  # fmt: skip
    (folder / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "results.json").write_text(json.dumps({"status": status, "wall_time_s": 600}))
    return folder


@pytest.mark.parametrize(
    ("last", "code"),
    [
        ((9.0, 5.2), 0),  # both floors met exactly
        ((9.5, 4.9), 0),
        ((8.99, 4.9), 1),  # accuracy just short
        ((9.5, 5.21), 1),  # loss just short
    ],
)
def test_the_last_evaluation_decides(tmp_path, capsys, last, code):
    folder = write_run(tmp_path / "run", [(20.0, 3.0), last])  # an earlier pass does not count
    assert albert_learns.main([str(folder)]) == code
    out = capsys.readouterr().out
    assert "floor 9.00" in out and "floor 5.200" in out and "10.0 min" in out


def test_a_missing_or_unfinished_run_is_exit_2(tmp_path, capsys):
    assert albert_learns.main([str(tmp_path / "absent")]) == 2
    folder = write_run(tmp_path / "run", [(20.0, 3.0)], status="running")
    assert albert_learns.main([str(folder)]) == 2
    assert "not completed" in capsys.readouterr().err
