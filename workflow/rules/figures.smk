rule fig1_accuracy:
    """Figure 1(a,b): train/test accuracy, standard vs BatchNorm, per learning rate."""
    input:
        run_metas(["standard", "batchnorm"], config["fig1_lrs"]),
    output:
        report(
            "results/figures/fig1_accuracy.png",
            caption="../report/fig1_accuracy.rst",
            category="Figures",
        ),
    params:
        kwargs={"lrs": config["fig1_lrs"]},
    log:
        "results/logs/figures/fig1_accuracy.log",
    conda:
        "../../envs/bnopt.yaml"
    script:
        "../scripts/plot_figure.py"


rule fig2_noisy_bn:
    """Figure 2: train accuracy of standard, BatchNorm and noisy BatchNorm."""
    input:
        run_metas(["standard", "batchnorm", "noisy_batchnorm"], [config["fig2_lr"]]),
    output:
        report(
            "results/figures/fig2_noisy_bn.png",
            caption="../report/fig2_noisy_bn.rst",
            category="Figures",
        ),
    params:
        kwargs={"lr": config["fig2_lr"]},
    log:
        "results/logs/figures/fig2_noisy_bn.log",
    conda:
        "../../envs/bnopt.yaml"
    script:
        "../scripts/plot_figure.py"
