"""Does an ALBERT run learn? Its evaluations against the floors of an input-free model.

    scripts/albert_learns.py RUN_FOLDER     (make albert-learns trains the run, then calls this)

A model that ignores its input predicts one token everywhere and scores the test targets with
one fixed distribution: at best the majority token's share of MLM accuracy, and, learned from
the training text, the MLM loss of the training text's unigram on the test targets
(``mlm_loss_unigram``: the "unigram level" where input-free runs plateau). The run passes when
its last evaluation beats both by the floors fixed before any run (issue 22): MLM accuracy at
least ACCURACY_FACTOR times the majority share, and MLM loss at least LOSS_MARGIN nats below
the unigram level. Printed beside them, not judged: the test targets' own unigram entropy
(``mlm_acc_label_entropy``, a bound only a model that knew the test split's token shares
could reach) and SOP accuracy against chance (50%). Prints one line per evaluation; exits 0
when the floors hold, 1 when they do not, 2 when the folder holds no completed run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ACCURACY_FACTOR = 1.5
LOSS_MARGIN = 0.3  # nats
SOP_CHANCE = 50.0


def floors_hold(metrics: dict) -> tuple[bool, bool]:
    """(accuracy floor holds, loss floor holds) for one evaluation's metrics."""
    accuracy = metrics["mlm_acc"] >= ACCURACY_FACTOR * metrics["mlm_acc_majority"]
    loss = metrics["mlm_loss"] <= metrics["mlm_loss_unigram"] - LOSS_MARGIN
    return accuracy, loss


def describe(row: dict) -> str:
    accuracy, loss = floors_hold(row)
    return (
        f"epoch {row['epoch']:>3} step {row['step']:>6}: MLM accuracy {row['mlm_acc']:5.2f}% "
        f"(floor {ACCURACY_FACTOR * row['mlm_acc_majority']:.2f}: {'ok' if accuracy else 'no'}, "
        f"{row['mlm_acc_pred_classes']:.0f} tokens predicted), MLM loss {row['mlm_loss']:.3f} "
        f"(floor {row['mlm_loss_unigram'] - LOSS_MARGIN:.3f}: {'ok' if loss else 'no'}; "
        f"test targets' entropy {row['mlm_acc_label_entropy']:.3f}), "
        f"SOP {row['sop_acc']:.2f}% of {row.get('sop_acc_examples', 0):.0f} (chance {SOP_CHANCE:g})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_folder", type=Path)
    folder = parser.parse_args(argv).run_folder
    try:
        results = json.loads((folder / "results.json").read_text())
        history = [json.loads(line) for line in (folder / "history.jsonl").open()]
    except (OSError, ValueError) as error:
        print(f"error: {folder}: no readable run ({error}); train it first", file=sys.stderr)
        return 2
    if results.get("status") != "completed":
        print(
            f"error: {folder}: the run is {results.get('status')!r}, not completed", file=sys.stderr
        )
        return 2
    evaluations = [row for row in history if "mlm_acc" in row]
    for row in evaluations:
        print(describe(row))
    accuracy, loss = floors_hold(evaluations[-1])
    minutes = results.get("wall_time_s", 0.0) / 60
    verdict = "learns" if accuracy and loss else "does not pass the floors"
    print(f"{folder}: the last evaluation {verdict} (the run took {minutes:.1f} min)")
    return 0 if accuracy and loss else 1


if __name__ == "__main__":
    sys.exit(main())
