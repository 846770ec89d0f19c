"""Findings and "Read with care": the plain sentences at the top of the report, generated from its tables.

Each sentence is one small pure function of :class:`Facts` (the report's computed tables plus a few counts),
registered in :data:`FINDINGS` (what the study found) or :data:`CAUTIONS` (conditions that weaken those
claims). A function returns its sentence (Markdown, ending in a link to the section and table that back it)
or None where it does not apply: a caution appears only when its condition holds. Nothing is typed by hand:
every number comes from a table that the report also writes to ``tables/``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from robustseg._registry import Registry
from robustseg.labels import display_name
from robustseg.qc.robustness import DAMAGE_LEVEL
from robustseg.report import markdown as md
from robustseg.report.aggregate import FEW_PATIENTS

Sentence = Callable[["Facts"], "str | None"]
FINDINGS: Registry[Sentence] = Registry("finding")
"""What the study found, in reading order."""
CAUTIONS: Registry[Sentence] = Registry("caution")
"""Conditions that weaken the findings; each appears only where it applies."""
CONDITIONS: dict[str, str] = {}
"""What each caution checks, in a few words (the Read-with-care list says which were checked when none applies)."""

SMALL_EXTERNAL = 20
"""An external test set with fewer images than this says little about transfer."""
REVIEW_FRACTION = 0.10
"""The review budget of the QC finding: the least-confident 10 % of predictions."""
SCORE_WORDS = {"pairwise_dice": "the pairwise Dice of the seed ensemble",
               "mutual_info": "the mutual information of the seed ensemble", "entropy": "the mean entropy",
               "sdc": "the Soft Dice Confidence", "range_z": "the out-of-range measurement score",
               "composite": "the composite score (seed disagreement and out-of-range measurements)"}
"""How the QC finding names each ground-truth-free score."""
POWER = 0.80
"""Power that a design should have for the differences it is asked about."""
LOW_POWER_LISTED = 4
"""How many under-powered comparisons the low-power caution names (the baseline's first; the rest are counted)."""

@dataclass(frozen=True)
class Facts:
    """What the sentences read: the report's tables (by their ``tables/NAME.csv`` name) and a few counts."""

    tables: Mapping[str, pd.DataFrame]
    baseline: str
    arms: tuple[str, ...]
    class_names: tuple[str, ...]
    small: tuple[str, ...]
    n_patients: int = 0
    n_images: int = 0
    sections: Mapping[str, str] = field(default_factory=dict)
    """Section key -> heading text (``summary`` -> ``1. Summary``); links point at these headings."""

    def table(self, name: str) -> pd.DataFrame:
        df = self.tables.get(name)
        return df if isinstance(df, pd.DataFrame) else pd.DataFrame()

    @property
    def foreground(self) -> list[str]:
        """Foreground classes, small structures first (the reader's order of interest)."""
        return [*self.small, *(c for c in self.class_names[1:] if c not in self.small)]


# --- formatting helpers -----------------------------------------------------------------------------------------


def see(facts: Facts, section: str, *tables: str) -> str:
    """`` ([§1 Summary](#1-summary); [summary.csv](tables/summary.csv))``: where a sentence's numbers live."""
    parts = []
    title = facts.sections.get(section)
    if title:
        number = title.split(".", 1)[0]
        label = f"§{number}" if number.isdigit() else title.split(":", 1)[0]
        parts.append(f"[{label}](#{md.anchor(title)})")
    parts += [f"[{t}.csv](tables/{t}.csv)" for t in tables]
    return f" ({'; '.join(parts)})" if parts else ""


def _ci(value: object, low: object, high: object, digits: int = 3) -> str:
    return f"{md.num(value, digits)} {md.interval(low, high, digits)}"


def _pct(x: object, digits: int = 0) -> str:
    return "n/a" if md.num(x) == "n/a" else f"{float(x) * 100:.{digits}f} %"


def _names(classes: Sequence[str]) -> str:
    names = [display_name(c) for c in classes]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _rows(df: pd.DataFrame, **eq: object) -> pd.DataFrame:
    for col, val in eq.items():
        if df.empty or col not in df.columns:
            return pd.DataFrame()
        df = df[df[col] == val]
    return df


def _by_class(df: pd.DataFrame, classes: Sequence[str]) -> list[tuple[str, pd.Series]]:
    """The first row of each class of ``classes`` that ``df`` has, in that order."""
    out = []
    for c in classes:
        r = _rows(df, **{"class": c})
        if not r.empty:
            out.append((c, r.iloc[0]))
    return out


def _n(value: int, word: str) -> str:
    return f"{value} {word}{'' if value == 1 else 's'}"


# --- findings ---------------------------------------------------------------------------------------------------


@FINDINGS.register("headline_dice")
def headline_dice(facts: Facts) -> str | None:
    """Global Dice per structure of the baseline arm, pooled over its runs, with its recipe interval (new training
    runs and new patients) where the summary has one, else its test-set interval (new patients, models fixed)."""
    s = _rows(facts.table("summary"), arm=facts.baseline)
    rows = _by_class(s, facts.foreground)
    if not rows:
        return None
    recipe = "global_recipe_low" in s.columns
    low, high = next(((f"global_{k}_low", f"global_{k}_high") for k in ("recipe", "test", "ci")
                      if f"global_{k}_low" in s.columns), ("global_ci_low", "global_ci_high"))
    parts = [f"{display_name(c)} {_ci(r['global_estimate'], r.get(low), r.get(high))}" for c, r in rows]
    n_runs = int(rows[0][1].get("global_n_runs", 0) or 0)
    arm = f"arm `{facts.baseline}`" + (" (baseline)" if len(facts.arms) > 1 else "")
    what = ("95 % recipe intervals: new training runs and new patients; the test-set intervals, for these trained "
            "models, are in the summary" if recipe else "95 % test-set intervals: patients resampled, trained models "
            "held fixed")
    return (f"Global Dice of {arm}, pooled over its {_n(n_runs, 'run')} on {_n(facts.n_images, 'held-out test image')} "
            f"from {_n(facts.n_patients, 'patient')}: {'; '.join(parts)} ({what}).{see(facts, 'summary', 'summary')}")


def _icc_meaning(readings: Sequence[tuple[str, float]]) -> str:
    """What the lower ends of the seed-ICC intervals say about single models."""
    lows = [lo for _, lo in readings if np.isfinite(lo)]
    if not lows:
        return ""
    if min(lows) < 0.5:
        return ("which images one trained model gets right depends on its seed, so judge the recipe by several "
                "seeds or by the ensemble")
    if min(lows) >= 0.75:
        return "seeds agree image by image, so one trained model's per-image results reproduce"
    return "seeds agree image by image moderately well"


@FINDINGS.register("seed_agreement")
def seed_agreement(facts: Facts) -> str | None:
    """How much seeds disagree (SD of global Dice across seeds) and whether it matters (seed ICC reading)."""
    s = _rows(facts.table("summary"), arm=facts.baseline)
    rows = [(c, r) for c, r in _by_class(s, facts.foreground) if md.num(r.get("global_sd_seed")) != "n/a"]
    if not rows:
        return None
    sds = ", ".join(f"{md.num(r['global_sd_seed'])} ({display_name(c)})" for c, r in rows)
    text = f"Seeds of arm `{facts.baseline}` differ by an SD of {sds} in global Dice"
    icc = facts.table("icc_seed")
    icc = icc[icc["measure"].astype(str).str.startswith("dice")] if "measure" in icc.columns else pd.DataFrame()
    found = [(c, r) for c, r in _by_class(_rows(icc, arm=facts.baseline), facts.small) if md.num(r["icc"]) != "n/a"]
    readings = []
    if found:
        per = [f"{_ci(r['icc'], r['ci_low'], r['ci_high'], 2)} for {display_name(c)} ({r['reading']})" for c, r in found]
        readings = [(c, float(r["ci_low"])) for c, r in found]
        text += f"; image by image, the seed ICC of per-image Dice is {'; '.join(per)}"
        meaning = _icc_meaning(readings)
        if meaning:
            text += f": {meaning}"
    return text + "." + see(facts, "agreement", "summary", "icc_seed")


@FINDINGS.register("run_health")
def run_health(facts: Facts) -> str | None:
    """Collapse, divergence or failure of any run (``runs`` table)."""
    runs = facts.table("runs")
    if runs.empty or "status" not in runs.columns:
        return None
    done = runs[runs["status"] == "complete"]
    failed = runs[runs["status"] != "complete"]
    collapsed = _collapses(done)
    diverged = done[done["diverged"].astype(str).str.lower() == "true"] if "diverged" in done.columns else done.iloc[:0]
    if failed.empty and not collapsed and diverged.empty:
        return (f"All {_n(len(runs), 'planned run')} completed; none collapsed (each predicted every structure that "
                f"validation images have) and none diverged.{see(facts, 'summary', 'runs')}")
    parts = []
    if collapsed:
        parts.append(f"{len({r for r, _ in collapsed})} of {len(done)} completed runs collapsed ("
                     + "; ".join(f"{display_name(c)}: {n} run{'s' if n != 1 else ''}" for c, n in _count(collapsed))
                     + "; they stay in every statistic as real outcomes)")
    if not diverged.empty:
        parts.append(f"{_n(len(diverged), 'run')} diverged ({', '.join(f'`{r}`' for r in diverged['run_id'])})")
    if not failed.empty:
        parts.append(f"{len(failed)} of {len(runs)} planned runs did not complete and are left out of every number "
                     f"({', '.join(f'`{r}`' for r in failed['run_id'])})")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "." + see(facts, "summary", "runs")


def _collapses(done: pd.DataFrame) -> list[tuple[str, str]]:
    """(run id, class) of every collapse recorded in the ``collapsed`` column (``;``-separated classes)."""
    if "collapsed" not in done.columns:
        return []
    out = []
    for run_id, value in zip(done["run_id"], done["collapsed"], strict=True):
        if isinstance(value, str) and value.strip():
            out += [(str(run_id), c) for c in value.split(";") if c]
    return out


def _count(pairs: list[tuple[str, str]]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for _, c in pairs:
        counts[c] = counts.get(c, 0) + 1
    return sorted(counts.items())


@FINDINGS.register("arm_verdicts")
def arm_verdicts(facts: Facts) -> str | None:
    """The decision of each arm comparison per structure (better / worse / equivalent / inconclusive), with the
    difference, its interval and, where the table has it, the minimum detectable difference (MDD)."""
    t = facts.table("arm_comparison")
    if t.empty or len(facts.arms) < 2:
        return None
    decided = "decision" in t.columns
    groups = []
    for (a, b), g in t.groupby(["arm_a", "arm_b"], sort=False):
        parts = []
        for c, r in _by_class(g, facts.foreground):
            diff = f"{float(r['diff']):+.3f} {md.interval(r['ci_low'], r['ci_high'])}" if md.num(r["diff"]) != "n/a" \
                else "n/a"
            if "mdd" in g.columns:
                diff += f", MDD {md.mdd(r['mdd'])}"
            flag = r.get("flag")
            if isinstance(flag, str) and flag.strip():
                diff += f", next to {flag.strip()}"
            parts.append(f"{display_name(c)} {_verdict_word(str(r['decision' if decided else 'verdict']), a, b)} ({diff})")
        groups.append(f"`{a}` vs `{b}`: " + ", ".join(parts))
    margin = t["margin"].dropna() if "margin" in t.columns else pd.Series(dtype=float)
    how = "Holm-adjusted" + (f"; equivalent = within ±{float(margin.iloc[0]):g} Dice by TOST" if len(margin) else "")
    mdd = ("; MDD = the smallest true difference the design finds with 80 % power" if "mdd" in t.columns else "")
    return (f"Arm comparisons (difference a - b in per-image Dice over every test image with its 95 % interval over "
            f"runs; {how}{mdd}): {'; '.join(groups)}.{see(facts, 'arms', 'arm_comparison')}")


def _verdict_word(verdict: str, a: str, b: str) -> str:
    if verdict == f"{a} better":
        return "better"
    if verdict == f"{b} better":
        return "worse"
    if verdict.startswith("equivalent"):
        return "equivalent"
    if verdict.startswith("not testable"):
        return "not testable"
    return "inconclusive"


@FINDINGS.register("ensemble_gain")
def ensemble_gain(facts: Facts) -> str | None:
    """The all-runs ensemble of the baseline against its members (global Dice)."""
    e = _rows(facts.table("ensembles"), kind="seeds+folds", arm=facts.baseline, aggregate="global")
    if "metric" in e.columns:
        e = e[e["metric"] == "dice"]
    rows = _by_class(e, facts.small or facts.foreground)
    if not rows:
        return None
    parts = [f"{display_name(c)} {md.num(r['ensemble'])} against members {md.num(r['member_min'])}-"
             f"{md.num(r['member_max'])} (rank {int(r['rank'])} of {int(r['n_ranked'])})" for c, r in rows]
    return (f"The ensemble of all {int(rows[0][1]['n_members'])} runs of `{facts.baseline}` (mean softmax) reaches "
            f"global Dice {'; '.join(parts)}.{see(facts, 'ensembles', 'ensembles')}")


@FINDINGS.register("area_agreement")
def area_agreement(facts: Facts) -> str | None:
    """Agreement of predicted and reference areas of the small structures (ICC; ensemble where there is one)."""
    t = _rows(facts.table("icc_reference"), arm=facts.baseline)
    if t.empty:
        return None
    kind = "ensemble (all runs)" if (t["prediction"] == "ensemble (all runs)").any() else "single run"
    rows = _by_class(t[t["prediction"] == kind], facts.small)
    if not rows:
        return None
    parts = [f"{display_name(c)} ICC {_ci(r['icc'], r['ci_low'], r['ci_high'], 2)} ({r['reading']})" for c, r in rows]
    who = "the all-runs ensemble" if kind.startswith("ensemble") else "single runs (mean over runs)"
    return (f"Predicted areas of {who} agree with the reference areas: {'; '.join(parts)} "
            f"(the reference study targeted ICC >= 0.9).{see(facts, 'agreement', 'icc_reference')}")


@FINDINGS.register("perturbation_ranking")
def perturbation_ranking(facts: Facts) -> str | None:
    """The most and least damaging perturbation for the small structures (Dice retention, baseline arm): at matched
    image damage (SSIM) where the report has the ``matched_damage`` table, else at each perturbation's own
    severities."""
    matched = _matched_ranking(facts)
    if matched:
        return matched
    ret = _rows(facts.table("retention"), arm=facts.baseline)
    if ret.empty:
        return None
    ret = ret[~ret["perturbation"].astype(str).str.startswith("external: ") & ret["class"].isin(facts.small)]
    if ret.empty:
        return None
    mean = ret.groupby("perturbation")["retention"].mean().dropna().sort_values(kind="stable")
    if mean.empty:
        return None
    sev = _severities(facts)
    worst, best = str(mean.index[0]), str(mean.index[-1])

    def per(p: str) -> str:
        r = ret[ret["perturbation"] == p].set_index("class")["retention"]
        return ", ".join(f"{md.num(r.get(c), 2)} {display_name(c)}" for c in facts.small if c in r.index)

    if best == worst:
        text = (f"Under its one perturbation `{worst}` (severities {sev}), {_names(facts.small)} keep a Dice "
                f"retention of {per(worst)} (perturbed / clean Dice of the same run, mean over severities)")
    else:
        text = (f"Of {len(mean)} perturbations (severities {sev}), `{worst}` damages {_names(facts.small)} most "
                f"(Dice retention {per(worst)}: perturbed / clean Dice of the same run, mean over severities) and "
                f"`{best}` least ({per(best)})")
    text += "; severities are each perturbation's own levels, not matched on image damage"
    return text + "." + see(facts, "robustness", "retention", "robustness")


def _matched_ranking(facts: Facts) -> str | None:
    """The ranking at matched in-fan SSIM (``matched_damage``: retention read off each run's retention-vs-SSIM curve
    at a common SSIM, then mean and SD over runs)."""
    m = _rows(facts.table("matched_damage"), arm=facts.baseline)
    if m.empty or "level" not in m.columns:
        return None
    levels = sorted(m["level"].astype(float).unique())
    level = min(levels, key=lambda v: abs(v - DAMAGE_LEVEL))
    m = m[np.isclose(m["level"].astype(float), level) & m["class"].isin(facts.small)]
    reached = m[m["retention_mean"].notna() & m.get("reached", pd.Series(True, index=m.index)).astype(bool)]
    mean = reached.groupby("perturbation")["retention_mean"].mean().sort_values(kind="stable")
    if len(mean) < 2:
        return None
    worst, best = str(mean.index[0]), str(mean.index[-1])

    def per(p: str) -> str:
        r = reached[reached["perturbation"] == p].set_index("class")
        return ", ".join(f"{md.pm(r.loc[c, 'retention_mean'], r.loc[c, 'retention_sd'], 2)} {display_name(c)}"
                         for c in facts.small if c in r.index)

    short = sorted(set(m["perturbation"]) - set(mean.index))
    text = (f"At equal image damage (SSIM {level:g}, in the fan or in the region a local artefact touches), `{worst}` "
            f"costs {_names(facts.small)} the most (Dice retention {per(worst)}, mean ± SD over runs) and `{best}` the "
            f"least ({per(best)}), of {len(mean)} perturbations")
    if short:
        text += f"; {', '.join(f'`{p}`' for p in short)} never damage{'s' if len(short) == 1 else ''} images that much"
    return text + "." + see(facts, "robustness", "matched_damage", "damage")


def _severities(facts: Facts) -> str:
    rob = facts.table("robustness")
    if rob.empty:
        return "n/a"
    s = sorted(int(v) for v in rob.loc[rob["perturbation"] != "none", "severity"].unique() if int(v) > 0)
    return ", ".join(str(v) for v in s) or "n/a"


@FINDINGS.register("external_sets")
def external_sets(facts: Facts) -> str | None:
    """Dice on each external test set next to the held-out test set (baseline arm)."""
    rob = _rows(facts.table("robustness"), arm=facts.baseline)
    if rob.empty:
        return None
    ext = sorted(p for p in rob["perturbation"].astype(str).unique() if p.startswith("external: "))
    if not ext:
        return None
    sizes = facts.table("test_sets").set_index("testset")["n_images"] if not facts.table("test_sets").empty else {}
    parts = []
    for p in ext:
        name = p.removeprefix("external: ")
        n = sizes.get(name) if hasattr(sizes, "get") else None
        vals = []
        for c in facts.small:
            clean = _rows(rob, perturbation="none", **{"class": c})
            e = _rows(rob, perturbation=p, **{"class": c})
            if not clean.empty and not e.empty:
                vals.append(f"{display_name(c)} {md.num(e.iloc[0]['dice_mean'])} (held-out test "
                            f"{md.num(clean.iloc[0]['dice_mean'])})")
        if vals:
            parts.append(f"`{name}`" + (f" ({_n(int(n), 'image')})" if n is not None else "") + ": " + ", ".join(vals))
    if not parts:
        return None
    return ("On external test sets, mean Dice over runs: " + "; ".join(parts) + "."
            + see(facts, "robustness", "robustness", "test_sets"))


@FINDINGS.register("review_catch")
def review_catch(facts: Facts) -> str | None:
    """What sending the 10 % least-confident predictions for review (best GT-free score) would catch."""
    from robustseg.qc import benchmark
    from robustseg.qc.scores import combined_name
    from robustseg.report.qc_section import SCORE_LABELS

    rc, rev = facts.table("qc_riskcov"), facts.table("qc_review")
    if rc.empty or rev.empty:
        return None
    best = benchmark.winner(rc, facts.baseline)
    if best is None:
        return None
    cls = combined_name(facts.small) if len(facts.small) > 1 else facts.small[0]
    r = _rows(rev, arm=facts.baseline, setting="all", score=best, **{"class": cls})
    r = r[np.isclose(r["review"].astype(float), REVIEW_FRACTION)] if not r.empty else r
    oracle = _rows(rev, arm=facts.baseline, setting="all", score="oracle", **{"class": cls})
    oracle = oracle[np.isclose(oracle["review"].astype(float), REVIEW_FRACTION)] if not oracle.empty else oracle
    score = _rows(rc, arm=facts.baseline, setting="all", score=best, **{"class": cls})
    if r.empty or score.empty:
        return None
    r, s = r.iloc[0], score.iloc[0]
    structures = "+".join(display_name(c) for c in facts.small)
    ranked = (f"ranked by {SCORE_WORDS.get(best, SCORE_LABELS.get(best, best))}, the best ground-truth-free score here "
              f"({structures} normalised AURC {_ci(s['naurc'], s['naurc_ci_low'], s['naurc_ci_high'], 2)}; "
              "1 = perfect ranking)")
    links = see(facts, "qc", "qc_review", "qc_riskcov")
    if md.num(r["failures_caught"]) == "n/a" or not float(r["failure_rate_all"]) > 0:
        return (f"No prediction failed ({structures} Dice < 0.5 on clean or perturbed images), so a review of the "
                f"least-confident {_pct(REVIEW_FRACTION)}, {ranked}, has nothing to catch.{links}")
    perfect = f" (a perfect ranking: {_pct(oracle.iloc[0]['failure_rate_kept'], 1)})" if not oracle.empty else ""
    return (f"Reviewing the {_pct(REVIEW_FRACTION)} least-confident predictions would catch "
            f"{_pct(r['failures_caught'])} of the {structures} failures (Dice < 0.5) and lower the failure rate of the "
            f"rest from {_pct(r['failure_rate_all'], 1)} to {_pct(r['failure_rate_kept'], 1)}{perfect}, with images "
            f"{ranked}; clean and perturbed images pooled.{links}")


@FINDINGS.register("machine")
def machine(facts: Facts) -> str | None:
    """The machine kinds of the runs and what reproduces where."""
    env = facts.table("environment")
    if env.empty:
        return None
    kinds = env.drop_duplicates("machine_kind")
    what = "; ".join(f"{k} ({int((env['machine_kind'] == k).sum())} runs)" for k in kinds["machine_kind"])
    head = (f"All {_n(len(env), 'run')} ran on one machine kind: {kinds.iloc[0]['machine_kind']}" if len(kinds) == 1
            else f"The runs ran on {len(kinds)} machine kinds: {what}")
    sd = _rows(facts.table("summary"), arm=facts.baseline)
    sd = [(c, r["global_sd_seed"]) for c, r in _by_class(sd, facts.small) if md.num(r.get("global_sd_seed")) != "n/a"]
    size = (" (" + ", ".join(f"{md.num(v)} {display_name(c)}" for c, v in sd) + ")") if sd else ""
    where = "that machine kind" if len(kinds) == 1 else "the same machine kinds"
    return (f"{head}. These numbers reproduce exactly only on {where} with the same thread counts and "
            f"library builds; elsewhere expect differences of about the seed SD{size}."
            + see(facts, "repro", "environment"))


# --- cautions ---------------------------------------------------------------------------------------------------


def caution(name: str, condition: str) -> Callable[[Sentence], Sentence]:
    """Register a caution under ``name``; ``condition`` says in a few words what it checks."""

    def deco(fn: Sentence) -> Sentence:
        CAUTIONS.add(name, fn)
        CONDITIONS[name] = condition
        return fn

    return deco



@caution("few_patients", f"fewer than {FEW_PATIENTS} test patients")
def few_patients(facts: Facts) -> str | None:
    if not 0 < facts.n_patients < FEW_PATIENTS:
        return None
    return (f"**Only {_n(facts.n_patients, 'test patient')}** (fewer than {FEW_PATIENTS}): the intervals are wide and "
            f"small differences cannot be resolved; a 1 %-wide interval needs about 100-200 test cases."
            + see(facts, "summary", "summary"))


@caution("collapsed_run", "a collapsed run")
def collapsed_run(facts: Facts) -> str | None:
    runs = facts.table("runs")
    done = runs[runs["status"] == "complete"] if "status" in runs.columns else runs
    collapsed = _collapses(done)
    if not collapsed:
        return None
    per = "; ".join(f"{display_name(c)} in {n} run{'s' if n != 1 else ''}" for c, n in _count(collapsed))
    return (f"**A collapsed run**: {per} never predicted a structure that validation images have. Such runs drag "
            "means down and widen SDs; they are real outcomes of the recipe, but a comparison next to one has "
            "little power." + see(facts, "summary", "runs"))


@caution("failed_run", "a planned run that did not complete")
def failed_run(facts: Facts) -> str | None:
    runs = facts.table("runs")
    if "status" not in runs.columns:
        return None
    bad = runs[runs["status"] != "complete"]
    if bad.empty:
        return None
    return (f"**{len(bad)} of {len(runs)} planned runs did not complete**; every number covers the others only, so an "
            "arm with a missing run is compared on fewer seeds." + see(facts, "summary", "runs"))


@caution("one_seed", "one seed per fold")
def one_seed(facts: Facts) -> str | None:
    s = _rows(facts.table("summary"), arm=facts.baseline)
    if s.empty or "global_sd_seed" not in s.columns or s["global_sd_seed"].notna().any():
        return None
    return ("**One seed per fold**: seed-to-seed variation is not measured, so no number here says how much a "
            "retrained model would differ." + see(facts, "spread", "summary"))


@caution("low_power", f"power below {POWER * 100:.0f} % for the differences asked about")
def low_power(facts: Facts) -> str | None:
    """Comparisons (or, with one arm, the design) whose minimum detectable difference at 80 % power exceeds the
    difference asked about: the equivalence margin (``compare.margin``)."""
    rows = []
    cmp = facts.table("arm_comparison")
    if {"mdd", "margin"} <= set(cmp.columns):
        for r in cmp.to_dict("records"):
            if not (np.isfinite(r["mdd"]) and r["mdd"] <= r["margin"]):
                rows.append((f"`{r['arm_a']}` vs `{r['arm_b']}`", r["class"], r["mdd"], r["margin"]))
    plan = facts.table("plan_claims")
    if not rows and {"mdd", "margin"} <= set(plan.columns):
        for r in plan.to_dict("records"):
            if not (np.isfinite(r["mdd"]) and r["mdd"] <= r["margin"]):
                rows.append((f"a second arm like `{r.get('arm', facts.baseline)}`", r["class"], r["mdd"], r["margin"]))
    if not rows:
        return None
    margin = float(rows[0][3])
    order = {c: i for i, c in enumerate(facts.foreground)}
    base = f"`{facts.baseline}`"
    # the baseline's comparisons first, small structures first, then the rest; a long list is cut and counted
    rows.sort(key=lambda x: (base not in x[0], order.get(x[1], 99), x[0]))
    per = "; ".join(f"{who}, {display_name(c)}: MDD {md.mdd(m)}" for who, c, m, _ in rows[:LOW_POWER_LISTED])
    if len(rows) > LOW_POWER_LISTED:
        per += f"; and {len(rows) - LOW_POWER_LISTED} more comparisons"
    section = "what-this-study-can-claim" if "what-this-study-can-claim" in facts.sections else "arms"
    return (f"**Power below {POWER * 100:.0f} %** for differences of ±{margin:g} Dice (the equivalence margin asked about): "
            f"{per}. A difference smaller than the MDD would most likely be missed, and \"no difference\" is not "
            "\"equivalent\"." + see(facts, section, "arm_comparison" if not cmp.empty else "plan_claims"))


@caution("small_external", f"an external test set of fewer than {SMALL_EXTERNAL} images")
def small_external(facts: Facts) -> str | None:
    sets = facts.table("test_sets")
    if sets.empty:
        return None
    small = sets[(sets["testset"] != "test") & (sets["n_images"] < SMALL_EXTERNAL)]
    if small.empty:
        return None
    names = ", ".join(f"`{r.testset}` ({_n(int(r.n_images), 'image')})" for r in small.itertuples(index=False))
    return (f"**Small external test set**: {names}, fewer than {SMALL_EXTERNAL} images; its Dice says little about "
            "transfer." + see(facts, "robustness", "test_sets"))


@caution("nondeterministic", "non-deterministic settings")
def nondeterministic(facts: Facts) -> str | None:
    """Determinism switches off in a run's machine record, or torch warning (``warnings.log``) of an operation
    without a deterministic implementation."""
    env = facts.table("environment")
    reasons = env["nondeterministic"].fillna("").astype(str) if "nondeterministic" in env.columns else pd.Series([])
    flagged = reasons[reasons != ""]
    why = [f"{r} in {int((flagged == r).sum())} of {len(env)} runs" for r in sorted(set(flagged))]
    logged = facts.table("warnings")
    if "message" in logged.columns and logged["message"].astype(str).str.contains("deterministic", case=False).any():
        why.append("torch warned of an operation without a deterministic implementation (warnings.log)")
    if not why:
        return None
    return (f"**Non-deterministic settings** ({'; '.join(why)}): rerunning the same study file and seeds need not "
            "give the same numbers, even on the same machine." + see(facts, "repro", "environment"))


CALIBRATION_TOLERANCE = 0.05
"""A severity whose mean SSIM on the study's own test images is further than this from its calibration target lies
outside the calibrated range."""
CALIBRATION_LISTED = 4
"""How many off-target severities the caution names (the worst first; the rest are counted)."""


@caution("uncalibrated_severity", "severities outside the calibrated range")
def uncalibrated_severity(facts: Facts) -> str | None:
    """Perturbations applied at the network's input size (``perturb.stage = "model"``), severities a perturbation
    cannot reach by nature (``perturb.calibrated.LIMITED``), or severities whose mean SSIM on this study's test
    images (in the fan; in the affected region for a local artefact) is more than :data:`CALIBRATION_TOLERANCE`
    from the calibration target (``perturb.calibrated.TARGETS``)."""
    from robustseg.perturb.calibrated import LIMITED, TARGETS

    dmg = facts.table("damage")
    if dmg.empty or not {"perturbation", "severity", "ssim_fan"} <= set(dmg.columns):
        return None
    why = []
    if "stage" in dmg.columns and (dmg["stage"].astype(str) == "model").any():
        why.append("perturbations applied to the network's input, not at native resolution where the severities "
                   "were calibrated")
    off, cannot = [], []
    for r in dmg.to_dict("records"):
        sev = int(r["severity"])
        if not 1 <= sev <= len(TARGETS):
            continue
        region = md.num(r.get("ssim_region")) != "n/a"
        ssim = float(r["ssim_region"] if region else r["ssim_fan"])
        target = TARGETS[sev - 1]
        if sev in LIMITED.get(str(r["perturbation"]), ()):
            cannot.append(f"`{r['perturbation']}` {sev}")
        elif np.isfinite(ssim) and abs(ssim - target) > CALIBRATION_TOLERANCE:
            off.append((abs(ssim - target), f"`{r['perturbation']}` {sev}: SSIM {ssim:.2f} (target {target:.2f})"))
    if off:
        off.sort(key=lambda t: -t[0])
        named = "; ".join(t for _, t in off[:CALIBRATION_LISTED])
        more = f" and {len(off) - CALIBRATION_LISTED} more" if len(off) > CALIBRATION_LISTED else ""
        why.append(f"on this study's test images {named}{more}")
    if cannot:
        why.append(f"{', '.join(cannot)} cannot reach {'its' if len(cannot) == 1 else 'their'} target by nature")
    if not why:
        return None
    return (f"**Severities outside the calibrated range** ({'; '.join(why)}): there the same severity number does not "
            "mean the same image damage across perturbations; compare them at matched damage instead."
            + see(facts, "robustness", "damage"))


@caution("device_mix", "GPU and CPU runs mixed")
def device_mix(facts: Facts) -> str | None:
    env = facts.table("environment")
    if env.empty or "device" not in env.columns:
        return None
    kinds = sorted({"GPU" if str(d).startswith("cuda") else "CPU" for d in env["device"].dropna()})
    if len(kinds) < 2:
        return None
    n_gpu = int(env["device"].astype(str).str.startswith("cuda").sum())
    return (f"**GPU and CPU runs mixed**: {n_gpu} of {len(env)} runs trained on a GPU, the rest on a CPU. Kernels and "
            "rounding differ between them, so part of the seed spread may be the device." + see(facts, "repro", "environment"))


# --- rendering --------------------------------------------------------------------------------------------------


def sentences(facts: Facts, registry: Registry[Sentence]) -> pd.DataFrame:
    """Every sentence of ``registry`` that applies: columns ``kind, key, sentence`` in registry order."""
    kind = "finding" if registry is FINDINGS else "caution"
    rows = []
    for key, fn in registry.items():
        text = fn(facts)
        if text:
            rows.append({"kind": kind, "key": key, "sentence": text})
    return pd.DataFrame(rows, columns=["kind", "key", "sentence"])


def table(facts: Facts) -> pd.DataFrame:
    """Findings then cautions (``tables/findings.csv``)."""
    return pd.concat([sentences(facts, FINDINGS), sentences(facts, CAUTIONS)], ignore_index=True)


NEEDS: dict[str, Callable[[Facts], bool]] = {
    "uncalibrated_severity": lambda f: "ssim_fan" in f.table("damage").columns,
    "low_power": lambda f: "mdd" in f.table("arm_comparison").columns or "mdd" in f.table("plan_claims").columns,
}
"""Cautions that can be checked only where the report has their inputs (others always can)."""


def checked(facts: Facts) -> list[str]:
    """What the Read-with-care list checked on this study, in words (:data:`CONDITIONS`)."""
    return [CONDITIONS[k] for k in CAUTIONS if NEEDS.get(k, lambda f: True)(facts)]


def render(found: pd.DataFrame, conditions: Sequence[str] | None = None) -> str:
    """The Markdown of the two lists (``found``: :func:`table`; ``conditions``: :func:`checked`, named when none
    applies)."""
    f = found[found["kind"] == "finding"]["sentence"].tolist()
    c = found[found["kind"] == "caution"]["sentence"].tolist()
    out = "## Findings\n\n" + ("".join(f"- {s}\n" for s in f) if f else "_(no completed runs)_\n")
    out += "\n## Read with care\n\n"
    names = ", ".join(CONDITIONS[k] for k in CAUTIONS) if conditions is None else ", ".join(conditions)
    out += "".join(f"- {s}\n" for s in c) if c else f"- None of the conditions checked applies ({names}).\n"
    return out


__all__ = ["CAUTIONS", "FINDINGS", "Facts", "checked", "render", "sentences", "table"]
