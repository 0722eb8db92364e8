"""The reproduction scorecard's claims: every check of the paper's claims (and of ours beyond
it) that a config asks for, as data.

A *check* compares one quantity of a *treatment* variant with a *baseline* (another variant,
or the edge of stability 2/lr) for one family of runs (``net``: the configured dataset and
model; ``dln``: the deep linear network) at one learning rate (and layer), in a direction, judged
against the smallest effect of interest of its kind of quantity (``SMALLEST_EFFECT``). :func:`checks` lists them at the figures' learning rates and
layers; :mod:`bnopt.scorecard.values` reads what they compare from the runs, :mod:`bnopt.scorecard.verdicts`
judges them and :mod:`bnopt.scorecard.text` writes the table as Markdown. The rule ``scorecard``
writes ``results/tables/claims.csv`` and ``claims.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bnopt.plan.figure_specs import figure_specs, figures_off
from bnopt.plan.runs import family_runs
from bnopt.plan.variants import variants_in

VERDICTS = ("holds", "does not hold", "inconclusive", "not measured")
DIRECTIONS = ("lower", "higher", "not_lower", "not_higher", "within")
EDGE = "2/lr"          # the baseline of the edge-of-stability checks
LATE_FRACTION = 0.1    # "after the first 10% of steps"
# The smallest effect of interest, one per kind of quantity, the same for every claim
# (docs/scorecard.md, "The smallest effect"): an effect inside it counts as no effect. For a
# ratio a factor (x1.25 or /1.25), for a difference an amount.
SMALLEST_EFFECT = {
    "ratio": 1.25,     # the landscape, ICS, moment shift, curvature; the edge of stability
    "loss": 1.25,      # the training loss over a run (the DLN's squared loss)
    "accuracy": 0.02,  # accuracies: 2 percentage points
    "cosine": 0.05,    # cos(G, G')
    "share": 0.25,     # a share of BN's gain over the standard net: a quarter of it
}
KINDS = {"ratio": "ratio", "loss": "ratio", "accuracy": "difference", "cosine": "difference",
         "share": "share", "fraction": "difference"}
# each kind's comparison (a share is judged against 1, all of BN's gain); a fraction of seeds
# has no margin


@dataclass(frozen=True)
class Quantity:
    label: str
    kind: str              # a key of KINDS: its comparison and its smallest effect
    matched: bool = False  # a per-step quantity, judged at matched training loss
    reads: str | None = None  # the measurement it reads (bnopt.plan.tables.MEASUREMENTS)

    @property
    def comparison(self) -> str:
        """'ratio' (treatment / baseline, judged on a log scale), 'difference', or 'share'
        (of BN's gain over the standard net, judged against 1)."""
        return KINDS[self.kind]


# What a check can compare: per run, one number (per layer for ICS and the moment shift), and
# for a matched quantity one number per level of the training loss as well.
QUANTITIES = {
    "final_test_acc": Quantity("test accuracy (eval mode, last step)", "accuracy"),
    "mean_batch_acc": Quantity("training accuracy averaged over the run (batch, training mode)",
                               "accuracy"),
    "run_loss": Quantity("training loss over the run (geometric mean, batch, training mode)",
                         "loss"),
    "trained": Quantity("runs that trained (fraction of seeds)", "fraction"),
    # (treatment - standard) / (BN - standard) of mean_batch_acc, per seed
    "bn_gain_share": Quantity("share of BN's gain over the standard net in training accuracy "
                              "averaged over the run", "share"),
    "loss_range": Quantity("loss range along the gradient", "ratio", True, "probes"),
    "grad_pred": Quantity("gradient change along the gradient (max)", "ratio", True, "probes"),
    "beta_smoothness": Quantity("effective beta-smoothness", "ratio", True, "probes"),
    "ics_rel": Quantity("relative ICS ||G - G'|| / ||G||", "ratio", True, "ics"),
    "ics_cos": Quantity("ICS cos(G, G')", "cosine", True, "ics"),
    "mean_shift": Quantity("per-unit mean shift of a fixed batch over a step / the unit's std",
                           "ratio", True, "activations"),
    "var_shift": Quantity("per-unit variance shift of a fixed batch over a step / the unit's "
                          "variance", "ratio", True, "activations"),
    "lambda_max": Quantity("top Hessian eigenvalue", "ratio", True, "hessian"),
    "beta_late": Quantity("effective beta after the first 10% (median)", "ratio",
                          reads="probes"),
    "batch_sharpness_late": Quantity("batch sharpness after the first 10% (median)", "ratio",
                                     reads="hessian"),
}


@dataclass(frozen=True)
class Check:
    claim: str        # "1".."5" (the paper's), or "EoS", "curvature", "normalisers" (ours)
    statement: str    # the claim, short
    quantity: str     # a key of QUANTITIES
    family: str       # 'net' (the configured dataset and model) or 'dln'
    lr: float | None  # None: the check picks its lr (Claim 1's "trains where standard fails")
    treatment: str
    baseline: str     # a variant, or EDGE
    direction: str    # one of DIRECTIONS
    figure: str       # the figure that shows it: where that figure is off, so is the check
    layer: int = 0
    lrs: tuple = ()   # the lrs Claim 1's "trains where standard fails" looks at
    primary: bool = True  # one of the checks the claim-level line combines (the paper's
    # figure lr and layers); the others are secondary: shown, not combined

    @property
    def comparison(self) -> str:
        return QUANTITIES[self.quantity].comparison

    @property
    def margin(self) -> float:
        """The smallest effect of interest of this check's kind of quantity (a factor for a
        ratio, an amount for a difference; 0 for the fraction of seeds that trained)."""
        return SMALLEST_EFFECT.get(QUANTITIES[self.quantity].kind, 0.0)


CLAIMS = {
    "1": "BatchNorm trains faster and generalises better",
    "2": "Noisy BN trains almost as well as BN although its inputs are less stable than "
         "even the standard net's",
    "3": "BN does not reduce internal covariate shift (Definition 2.1)",
    "4": "BN makes the landscape smoother",
    "5": "l_p normalisations train like BN and smooth the landscape",
    "EoS": "Beyond the paper: SGD holds the curvature along its gradient at 2/lr",
    "curvature": "Beyond the paper: BN lowers the top Hessian eigenvalue",
    "normalisers": "Beyond the paper: LayerNorm, GroupNorm, weight norm are no rougher than BN",
}
LANDSCAPE = ("loss_range", "grad_pred", "beta_smoothness")


def checks(cfg: dict) -> list[Check]:
    """Every check a checked config ``cfg`` asks for, at the figures' learning rates and
    layers (so a check and the figure that shows it always agree). Long by design: the
    scorecard's whole list, one block per claim in the order of the paper, read top to
    bottom like the table it makes."""
    spec = {fig: kwargs for fig, (_, kwargs) in figure_specs(cfg).items()}
    lr, dlr = cfg["figure_lr"], cfg["dln"]["figure_lr"]
    out = []

    def add(claim, quantity, family, rate, treatment, baseline, direction, figure, **kw):
        # primary: at the family's figure lr, unless said otherwise
        kw.setdefault("primary", rate == (lr if family == "net" else dlr))
        out.append(Check(claim, CLAIMS[claim], quantity, family, rate, treatment, baseline,
                         direction, figure, **kw))

    for rate in spec["fig1_accuracy"]["lrs"]:
        add("1", "final_test_acc", "net", rate, "batchnorm", "standard", "higher", "fig1_accuracy")
        # "trains faster": the area under the training curve (the final training accuracy of
        # both nets saturates at 1, where a tie says nothing about speed)
        add("1", "mean_batch_acc", "net", rate, "batchnorm", "standard", "higher",
            "fig1_accuracy")
    add("1", "trained", "net", None, "batchnorm", "standard", "higher", "fig1_accuracy",
        lrs=tuple(spec["fig1_accuracy"]["lrs"]))
    # Figure 2: noisy BN's training curve stays close to BN's (over the run, not the saturated
    # final value): it keeps almost all of BN's gain over the standard net, although its
    # activations shift more than even the standard net's (Figure 8)
    add("2", "bn_gain_share", "net", lr, "noisy_batchnorm", "batchnorm", "not_lower",
        "fig2_noisy_bn")
    add("2", "mean_batch_acc", "net", lr, "noisy_batchnorm", "batchnorm", "not_lower",
        "fig2_noisy_bn", primary=False)
    # ... and still better than the standard net's
    add("2", "mean_batch_acc", "net", lr, "noisy_batchnorm", "standard", "higher",
        "fig2_noisy_bn")
    for layer in spec["fig8_activation_shift"]["layers"]:
        for q in ("mean_shift", "var_shift"):
            for baseline in ("standard", "batchnorm"):  # the claim is about the standard net's
                add("2", q, "net", lr, "noisy_batchnorm", baseline, "higher",
                    "fig8_activation_shift", layer=layer, primary=baseline == "standard")
    for fam, fig in (("net", "fig3_ics"), ("dln", "fig3_ics_dln")):
        for rate in spec[fig]["lrs"]:
            for layer in spec[fig]["layers"]:
                add("3", "ics_rel", fam, rate, "batchnorm", "standard", "not_lower", fig,
                    layer=layer)
                add("3", "ics_cos", fam, rate, "batchnorm", "standard", "not_higher", fig,
                    layer=layer)
    for fam, rate, fig in (("net", lr, "fig4_landscape"), ("dln", dlr, "fig10_dln_landscape")):
        for q in LANDSCAPE:
            add("4", q, fam, rate, "batchnorm", "standard", "lower", fig)
    for fam, rate, fig in (("net", lr, "fig12_lp_vgg"), ("dln", dlr, "fig13_lp_dln")):
        for v in variants_in("lp"):
            if v in variants_in("bn"):
                continue
            # Figures 12 and 13's training curves: the l_p net trains like BN (not worse by
            # the smallest effect) and better than the standard net
            if fam == "net":
                add("5", "mean_batch_acc", fam, rate, v, "batchnorm", "not_lower", fig)
                add("5", "mean_batch_acc", fam, rate, v, "standard", "higher", fig)
            else:  # the DLN's squared loss has no accuracy
                add("5", "run_loss", fam, rate, v, "batchnorm", "not_higher", fig)
                add("5", "run_loss", fam, rate, v, "standard", "lower", fig)
            for q in LANDSCAPE:  # ... and its landscape is smoother
                add("5", q, fam, rate, v, "standard", "lower", fig)
    for fam, rate, fig in (("net", lr, "fig4_landscape"), ("dln", dlr, "fig10_dln_landscape")):
        for v in variants_in("bn"):
            add("EoS", "beta_late", fam, rate, v, EDGE, "within", fig)
    for fam, rate in (("net", lr), ("dln", dlr)):
        for v in variants_in("bn"):
            add("EoS", "batch_sharpness_late", fam, rate, v, EDGE, "within", "fig16_curvature")
    for fam, rate in (("net", lr), ("dln", dlr)):
        add("curvature", "lambda_max", fam, rate, "batchnorm", "standard", "lower",
            "fig16_curvature")
    for fam, rate, fig in (("net", lr, "fig14_normalisers_vgg"),
                           ("dln", dlr, "fig15_normalisers_dln")):
        for v in variants_in("normalisers"):
            if v in variants_in("bn"):
                continue
            for q in LANDSCAPE:
                add("normalisers", q, fam, rate, v, "batchnorm", "not_higher", fig)
    return out


def check_runs(cfg: dict, check: Check) -> list[tuple]:
    """(dataset, model, variant, lr, seed) of every run ``check`` compares under ``cfg``."""
    variants = [v for v in (check.treatment, check.baseline) if v != EDGE]
    return family_runs(cfg, check.family, variants, check.lrs or [check.lr])


def scorecard_runs(cfg: dict) -> list[tuple]:
    """(dataset, model, variant, lr, seed) of every run the checks of ``cfg`` compare, where
    their figure is on: what the rule ``scorecard`` needs."""
    blocked = figures_off(cfg)
    runs = [run for c in checks(cfg) if c.figure not in blocked for run in check_runs(cfg, c)]
    return list(dict.fromkeys(runs))
