"""The verification view of a ranking's distances (fast-reid's ROC evaluator): every query x gallery pair is a
yes/no decision "same person?" at a distance threshold, and TPR at a fixed FPR says how many true pairs are
accepted when only that share of impostor pairs may be. The pairs are those the ranking scores: under the
standard protocol same-person same-camera pairs are left out (as they are left out of the ranking) and junk
columns are already gone; distractors (id 0) are impostors."""

from __future__ import annotations

from typing import Sequence

import numpy as np

FPRS = (1e-4, 1e-3, 1e-2)


def fpr_key(fpr: float) -> str:
    """The metrics key of one operating point: 'tpr@fpr1e-04'."""
    return f"tpr@fpr{fpr:.0e}"


def tpr_at_fpr(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
               g_camids: np.ndarray, fprs: Sequence[float] = FPRS, same_camera_removal: bool = True) -> dict[str, float]:
    """TPR (fraction) at each FPR: a pair is accepted when its distance is below a threshold; the threshold is the
    largest that accepts at most floor(fpr x impostor pairs) impostors (a true pair at exactly an impostor's
    distance is not counted, the point sklearn's ROC curve gives). NaN when there is no true or no impostor pair."""
    distmat = np.asarray(distmat)
    same = np.asarray(q_pids)[:, None] == np.asarray(g_pids)[None, :]
    scored = ~(same & (np.asarray(q_camids)[:, None] == np.asarray(g_camids)[None, :])) if same_camera_removal \
        else np.ones_like(same)
    genuine, impostor = distmat[same & scored], distmat[~same & scored]
    if len(genuine) == 0 or len(impostor) == 0:
        return {fpr_key(f): float("nan") for f in fprs}
    allowed = [int(np.floor(f * len(impostor) + 1e-9)) for f in fprs]
    inside = sorted({a for a in allowed if a < len(impostor)})
    nth = dict(zip(inside, np.partition(impostor, inside)[inside])) if inside else {}
    out = {}
    for f, a in zip(fprs, allowed):
        accepted = len(genuine) if a >= len(impostor) else int((genuine < nth[a]).sum())
        out[fpr_key(f)] = accepted / len(genuine)
    return out
