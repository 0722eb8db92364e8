# One rule per figure of the paper (FIGURE_SPECS in common.smk says which runs each needs);
# every figure is buildable by its path alone, e.g. results/figures/fig4_landscape.png. A
# `script:` rule or a `run:` rule running the same script in a warm worker (common.smk, WARM).
for _fig, (_groups, _kwargs) in FIGURE_SPECS.items():
    _FIG = dict(
        input={"runs": figure_inputs(_fig, _groups), "code": rule_code("plot_figure.py")},
        output=report(
            f"results/figures/{_fig}.png",
            caption=f"../report/{_fig}.rst",
            category="Figures",
        ),
        params={"figure": _fig, "kwargs": _kwargs},
        log=f"results/logs/figures/{_fig}.log",
    )

    if not WARM:

        rule:
            name:
                _fig
            localrule: True
            input:
                **_FIG["input"],
            output:
                _FIG["output"],
            params:
                **_FIG["params"],
            log:
                _FIG["log"],
            conda:
                "../../envs/bnopt.yaml"
            script:
                "../scripts/plot_figure.py"

    else:

        rule:
            name:
                _fig
            localrule: True
            input:
                **_FIG["input"],
            output:
                _FIG["output"],
            params:
                **_FIG["params"],
            log:
                _FIG["log"],
            run:
                run_rule_script("plot_figure.py", input, output, params, wildcards, threads,
                                log, resources, rule)
