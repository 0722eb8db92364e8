"""How a run ended: diverged, never learned (left its starting plateau), or trained. Written by
the training loop into run.json and read by the workflow's warnings, tables and figures."""

from __future__ import annotations

import math

import numpy as np

# A run "never learned" (left its starting plateau) by these rules; docs/outputs.md, "Runs that
# did not train".
TAIL_FRACTION = 0.01   # final batch loss / accuracy: mean over the last 1% of steps (>= 1 step)
CHANCE_MARGIN = 0.05   # classification: final batch accuracy below chance + this
LOSS_PLATEAU = 0.98    # regression: final batch loss above this fraction of the step-0 loss


def training_outcome(loss, accuracy, num_classes: int, diverged: bool) -> dict:
    """How a run ended, in training mode, from its per-step batch ``loss`` and ``accuracy``.

    ``final_batch_loss`` / ``final_batch_acc`` are means over the last ``TAIL_FRACTION`` of the
    steps (at least one). A run *never learned* when it did not diverge and
    - classification (``num_classes`` > 0): its final batch accuracy is below chance
      (1 / num_classes) + ``CHANCE_MARGIN`` (a loss criterion would miss a dead network whose
      loss falls from its initial value to ln(num_classes) by calibrating its constant output);
    - regression (``num_classes`` == 0, accuracy NaN): its final batch loss is above
      ``LOSS_PLATEAU`` x the loss at step 0.
    A diverged run is flagged by ``diverged`` instead; its final values are NaN.
    """
    loss = np.asarray(loss, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    chance = 1.0 / num_classes if num_classes else math.nan
    out = {"initial_loss": float(loss[0]) if len(loss) else math.nan, "final_batch_loss": math.nan,
           "final_batch_acc": math.nan, "chance_acc": chance, "never_learned": False}
    if diverged or not len(loss):
        return out
    tail = max(1, math.ceil(TAIL_FRACTION * len(loss)))
    out["final_batch_loss"] = float(loss[-tail:].mean())
    if num_classes:
        out["final_batch_acc"] = float(accuracy[-tail:].mean())
        out["never_learned"] = bool(out["final_batch_acc"] < chance + CHANCE_MARGIN)
    else:
        out["never_learned"] = bool(out["final_batch_loss"] > LOSS_PLATEAU * out["initial_loss"])
    return out


def outcome_text(meta: dict) -> str | None:
    """A one-line warning for a run that diverged or never learned (None for a healthy run)."""
    name = f"{meta['variant']} lr={meta['lr']:g} seed={meta['seed']} ({meta['dataset']}/{meta['model']})"
    if meta.get("diverged"):
        return f"{name} diverged at step {meta['steps_completed']}"
    if meta.get("never_learned"):
        if meta.get("chance_acc") == meta.get("chance_acc"):  # classification (not NaN)
            why = (f"final batch accuracy {meta['final_batch_acc']:.3f} is below chance "
                   f"({meta['chance_acc']:.3f}) + {CHANCE_MARGIN}")
        else:
            why = (f"final batch loss {meta['final_batch_loss']:.4g} is above {LOSS_PLATEAU:g} x "
                   f"the step-0 loss {meta['initial_loss']:.4g}")
        return f"{name} never learned: {why}"
    return None
