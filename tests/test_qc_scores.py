"""Ground-truth-free confidence scores: hand-computed values, empty-structure rules, composite, run files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from robustseg.errors import InputError
from robustseg.qc import benchmark
from robustseg.qc import scores as qs


def _probs(fg: np.ndarray, c: int = 2, n_classes: int = 4) -> np.ndarray:
    """Probabilities (1, C, H, W): class ``c`` gets ``fg``, background the rest."""
    p = np.zeros((1, n_classes, *fg.shape), dtype=np.float32)
    p[0, c] = fg
    p[0, 0] = 1 - fg
    return p


def test_soft_dice_confidence_by_hand() -> None:
    fg = np.array([[0.9, 0.8, 0.2, 0.0]], dtype=np.float32)
    # prediction = first two pixels; 2 * (0.9 + 0.8) / ((0.9 + 0.8 + 0.2) + 2)
    assert qs.soft_dice_confidence(_probs(fg), 2)[0] == pytest.approx(3.4 / 3.9)
    # predicted absent: probability that the structure is truly absent, prod(1 - p) over candidates p >= 0.1
    fg = np.array([[0.3, 0.1, 0.05, 0.0]], dtype=np.float32)
    assert qs.soft_dice_confidence(_probs(fg), 2)[0] == pytest.approx(0.7 * 0.9, rel=1e-5)
    assert qs.soft_dice_confidence(_probs(np.zeros((1, 4), np.float32)), 2)[0] == pytest.approx(1.0)
    # a confident prediction beats an unsure one of the same mask
    sure = qs.soft_dice_confidence(_probs(np.array([[0.99, 0.99, 0.01, 0.01]], np.float32)), 2)[0]
    unsure = qs.soft_dice_confidence(_probs(np.array([[0.6, 0.6, 0.4, 0.4]], np.float32)), 2)[0]
    assert sure > unsure


def test_entropy_region_rules() -> None:
    fg = np.array([[0.9, 0.6, 0.05, 0.0]], dtype=np.float32)
    t = qs.single_model_scores(_probs(fg), ["a"], structures=["csp"])
    h = lambda p: -(p * np.log(p) + (1 - p) * np.log(1 - p))  # noqa: E731
    assert t["entropy"].iloc[0] == pytest.approx((h(0.9) + h(0.6)) / 2, rel=1e-4)
    assert t["pred_pixels"].iloc[0] == 2
    # nothing predicted: candidates p >= 0.1 (a missed structure); none at all: 0
    fg = np.array([[0.3, 0.05, 0.0, 0.0]], dtype=np.float32)
    assert qs.single_model_scores(_probs(fg), ["a"], structures=["csp"])["entropy"].iloc[0] == pytest.approx(h(0.3),
                                                                                                              rel=1e-4)
    fg = np.zeros((1, 4), np.float32)
    assert qs.single_model_scores(_probs(fg), ["a"], structures=["csp"])["entropy"].iloc[0] == 0.0


def test_pairwise_dice_and_mutual_information() -> None:
    m = np.zeros((3, 2, 2, 4), dtype=np.uint8)
    m[0, 0, 0, :2] = 3
    m[1, 0, 0, :1] = 3
    m[2, 0, 0, :2] = 3  # image 0: sizes 2, 1, 2 -> Dice 2/3, 1, 2/3
    t = qs.pairwise_dice(m, ["a", "b"], structures=["lv"])
    assert t["pairwise_dice"].tolist() == pytest.approx([(2 / 3 + 1 + 2 / 3) / 3, 1.0])  # image b: all empty
    p = np.concatenate([_probs(np.array([[0.9, 0.1]], np.float32)), _probs(np.array([[0.9, 0.1]], np.float32))])
    same = qs.mutual_information(np.stack([p, p]), ["a", "b"], structures=["csp"])
    assert same["mutual_info"].abs().max() < 1e-5  # identical members: no epistemic part
    q = np.concatenate([_probs(np.array([[0.6, 0.1]], np.float32)), p[1:]])
    r = np.concatenate([_probs(np.array([[0.99, 0.1]], np.float32)), p[1:]])
    diff = qs.mutual_information(np.stack([q, r]), ["a", "b"], structures=["csp"])
    assert diff["mutual_info"].iloc[0] > 0.01 and diff["mutual_info"].iloc[1] == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(InputError, match="M>=2"):
        qs.pairwise_dice(m[:1], ["a", "b"])


def test_composite_and_reference_ranks() -> None:
    pw = np.array([1.0, 0.9, 0.5, 0.2])
    rz = np.array([0.0, 4.0, 1.0, 2.0])
    comp = qs.composite(pw, rz)
    # ranks of disagreement (0, .1, .5, .8) = (.25, .5, .75, 1); of z (0, 4, 1, 2) = (.25, 1, .5, .75)
    assert comp.tolist() == pytest.approx([0.25, 0.75, 0.625, 0.875])
    # against a reference sample: mid-rank ECDF
    assert qs.percentile_rank(np.array([0.5, 5.0]), np.array([0.0, 1.0, 2.0, 3.0])).tolist() == [0.25, 1.0]
    assert qs.confidence(np.array([1.0, 2.0]), "entropy").tolist() == [-1.0, -2.0]
    with pytest.raises(InputError, match="unknown QC score"):
        qs.confidence([1.0], "nope")


def test_run_files_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=(3, 8, 8)).transpose(0, 3, 1, 2).astype(np.float32)
    ids = ["x", "y", "z"]
    parts = [qs.condition_scores(probs, ids, "none", 0), qs.condition_scores(probs[::-1].copy(), ids, "blur", 3)]
    qs.write_run_qc(tmp_path, parts, ids)
    t = pd.read_csv(tmp_path / qs.QC_FILE)
    assert set(t["perturbation"]) == {"none", "blur"} and len(t) == 2 * 3 * len(qs.STRUCTURES)
    got_ids, masks = qs.load_run_masks(tmp_path / qs.MASKS_FILE)
    assert got_ids == ids and set(masks) == {("none", 0), ("blur", 3)}
    np.testing.assert_array_equal(masks[("none", 0)], probs.argmax(axis=1))


def test_benchmark_combined_and_settings() -> None:
    rows = []
    for run in ("r0", "r1"):
        for i in range(6):
            for cls in ("csp", "lv"):
                for pert, sev in (("none", 0), ("noise", 3)):
                    d = (i + 1) / 7 if pert == "none" else i / 10
                    rows.append({"arm": "a", "fold": 0, "seed": int(run[1]), "run_id": run, "image_id": f"i{i}",
                                 "patient_id": f"p{i // 2}", "perturbation": pert, "severity": sev, "class": cls,
                                 "dice": d, "pairwise_dice": d, "range_z": 0.0, "sdc": 1 - d, "entropy": 0.5,
                                 "mutual_info": np.nan if pert != "none" else 0.1, "pred_pixels": 1})
    out = benchmark.evaluate(pd.DataFrame(rows), n_boot=50)
    rc = out["riskcov"].set_index(["setting", "class", "score"])
    assert rc.loc[("all", "csp+lv", "pairwise_dice"), "naurc"] == pytest.approx(1.0)
    assert rc.loc[("clean", "csp", "sdc"), "naurc"] < 0  # anti-informative by construction
    assert ("all", "csp", "mutual_info") not in rc.index  # clean-only score is not scored on pooled sets
    assert ("clean", "csp", "mutual_info") in rc.index
    assert benchmark.winner(out["riskcov"], "a") == "pairwise_dice"
    assert {"noise s3", "perturbed", "clean", "all"} <= set(out["riskcov"]["setting"])
    assert not out["composite_vs_pairwise"].empty and not out["review"].empty
