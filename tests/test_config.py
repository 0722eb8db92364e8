import re
from pathlib import Path

import pytest
import yaml

from bnopt.plan.check import ConfigError, check_config
from bnopt.plan.runs import lr_str, run_dir
from bnopt.plan.schema import coerce, load_schema

ROOT = Path(__file__).resolve().parents[1]
BASE = yaml.safe_load((ROOT / "config.yaml").read_text())


def with_(**kw):
    return {**BASE, **kw}


def test_shipped_configs_are_valid():
    cfg = check_config(BASE)
    assert cfg["lrs"] == [0.1, 0.5, 0.01] and cfg["steps"] == 15000 and cfg["momentum"] == 0.0
    quick = check_config({**BASE, **yaml.safe_load((ROOT / "workflow/presets/quick.yaml").read_text())})
    assert quick["dataset"] == "digits"


def test_command_line_strings_are_coerced():
    # what snakemake --config seeds='[0,1]' lrs='[0.1,1e-3]' augment=true delivers
    cfg = check_config(with_(seeds=["0", "1"], lrs=["0.1", "1e-3"], augment="true", steps="20",
                             data_root="null", noisy_bn={"n_mu": "0.3"}))
    assert cfg["seeds"] == [0, 1] and cfg["lrs"] == [0.1, 0.001]
    assert cfg["augment"] is True and cfg["steps"] == 20 and cfg["data_root"] is None
    assert cfg["noisy_bn"] == {"n_mu": 0.3, "n_sigma": 1.25, "r_mu": 0.1, "r_sigma": 0.1}
    dln = check_config(with_(dln={"lrs": ["1e-6"], "steps": "50"}))["dln"]
    assert dln["lrs"] == [1e-6] and dln["steps"] == 50 and dln["fig9_layers"] == [1, 11, 24]
    assert coerce("[0.1, 0.5]", load_schema()["properties"]["lrs"]) == [0.1, 0.5]
    fast = check_config(with_(precision="tf32", vmap_probes="true", channels_last="false"))
    assert fast["precision"] == "tf32" and fast["vmap_probes"] is True
    assert fast["channels_last"] is False
    assert check_config(BASE)["channels_last"] == "auto"  # resolved per run: RunConfig
    assert check_config(with_(vmap_probes="true"))["channels_last"] == "auto"  # auto yields
    assert check_config(with_(channels_last="true"))["channels_last"] is True
    assert check_config(BASE)["dln"]["dtype"] == "float64"


def test_defaults_are_filled():
    minimal = {k: BASE[k] for k in ("dataset", "model", "variants", "lrs", "seeds", "steps",
                                     "batch_size")}
    cfg = check_config(minimal)
    assert cfg["eval_every"] == 500 and cfg["device"] == "auto" and cfg["fig1_lrs"] == [0.1, 0.5]


@pytest.mark.parametrize("override,expect", [
    ({"learning_rate": 0.1}, ["unknown config key 'learning_rate'", "Allowed keys:", "lrs"]),
    ({"lrs": ["0.1", "-0.5"]}, ["lrs[1] = -0.5", "must be > 0"]),
    ({"lrs": ["fast"]}, ["lrs[0] = 'fast'", "expected number"]),
    ({"seeds": ["0", "x"]}, ["seeds[1] = 'x'", "expected integer"]),
    ({"seeds": ["1.5"]}, ["seeds[0] = '1.5'", "expected integer"]),
    ({"steps": "many"}, ["steps = 'many'", "expected integer"]),
    ({"variants": ["standard", "instancenorm"]}, ["variants[1] = 'instancenorm'", "groupnorm"]),
    ({"dataset": "imagenet"}, ["dataset = 'imagenet'", "cifar10", "fashion_mnist"]),
    ({"model": "resnet18"}, ["model = 'resnet18'", "simple_cnn"]),
    ({"momentum": 1.0}, ["momentum = 1.0", "must be < 1"]),
    ({"device": "gpu"}, ["device = 'gpu'", "auto, cuda, cpu"]),
    ({"noisy_bn": {"n_sigma": 0.5}}, ["noisy_bn.n_sigma = 0.5", ">= 1"]),
    ({"noisy_bn": {"mu": 0.5}}, ["unknown config key 'mu' in noisy_bn"]),
    ({"dataset": "digits", "batch_size": 4096}, ["batch_size = 4096", "digits", "1437"]),
    ({"model": "simple_cnn", "fig1_layers": [3, 11]},
     ["fig1_layers = [3, 11]", "simple_cnn has layers 1..5"]),
    ({"model": "simple_cnn", "fig6_layer": "6"}, ["fig6_layer = 6", "simple_cnn has layers 1..5"]),
    ({"measure_every": 30, "hist_every": 100}, ["hist_every = 100", "multiple of measure_every"]),
    ({"probe_multipliers": ["0.5", "0"]}, ["probe_multipliers[1] = 0.0", "must be > 0"]),
    ({"dln": {"fig3_layers": ["9", "30"]}}, ["dln.fig3_layers = [9, 30]", "dln has layers 1..25"]),
    ({"dln": {"lr": 1e-6}}, ["unknown config key 'lr' in dln", "lrs"]),
    ({"dln": {"variants": ["noisy_batchnorm"]}}, ["dln.variants[0] = 'noisy_batchnorm'"]),
    ({"dataset": "dln"}, ["dataset = 'dln' is not allowed"]),
    ({"precision": "bf16"}, ["precision = 'bf16' is not allowed", "fp32, tf32"]),
    ({"dtype": "float16"}, ["dtype = 'float16' is not allowed", "float32, float64"]),
    ({"vmap_probes": "yes"}, ["vmap_probes = 'yes'", "expected boolean"]),
    ({"vmap_probes": "true", "channels_last": "true"},
     ["vmap_probes = true together with channels_last = true", "Set vmap_probes: false or "
      "channels_last: false"]),
    ({"checkpoint_every": 150}, ["checkpoint_every = 150", "multiple of log_every = 100"]),
    ({"checkpoint_every": 1100}, ["checkpoint_every = 1100", "dln.log_every = 500"]),
    ({"dataset": "fashion_mnist", "data_root": "/data/fm"},
     ["data_root", "/data/fm", "FashionMNIST", "data_root: null"]),
])
def test_bad_config_names_key_and_fix(override, expect):
    with pytest.raises(ConfigError) as e:
        check_config(with_(**override))
    for text in expect:
        assert text in str(e.value), str(e.value)


def test_run_paths_are_canonical():
    assert lr_str("0.1") == "0.1" and lr_str(1e-6) == "1e-06" and lr_str(0.5) == "0.5"
    assert run_dir("cifar10", "vgg", "batchnorm", "0.10", "2") == \
        "results/runs/cifar10/vgg/batchnorm/lr0.1/seed2"


def test_run_settings_are_listed_once_with_the_schema_s_defaults():
    """TRAIN_KEYS are RunConfig's fields; each is a schema key whose default is RunConfig's."""
    import dataclasses

    from bnopt.plan.runs import DERIVED, DLN_KEYS, RUN_IDENTITY, TRAIN_KEYS, RunConfig
    from bnopt.plan.schema import load_schema
    from bnopt.plan.variants import NOISY_BN_DEFAULTS

    props = load_schema()["properties"]
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    # every field but the identity is a config key, but those the plan derives (measures)
    assert set(TRAIN_KEYS) | set(RUN_IDENTITY) | set(DERIVED) == set(fields)
    assert not set(DERIVED) & set(props)
    net = RunConfig("synthetic", "vgg", "standard", 0.1, 0)  # every setting at its default
    for key in TRAIN_KEYS:
        assert key in props, f"{key} is a RunConfig field but not a config key"
        default = getattr(net, key)
        if "default" in props[key]:
            want = props[key]["default"]
            assert (list(default) if isinstance(default, tuple) else default) == want, key
    assert (net.steps, net.batch_size) == (BASE["steps"], BASE["batch_size"])  # no schema default
    assert net.noisy_bn == NOISY_BN_DEFAULTS and net.noisy_bn is not NOISY_BN_DEFAULTS
    assert set(DLN_KEYS) <= set(TRAIN_KEYS) and set(DLN_KEYS) <= set(props["dln"]["properties"])
    # the shipped config.yaml leaves noisy_bn to the one default
    assert check_config(yaml.safe_load((ROOT / "config.yaml").read_text()))["noisy_bn"] == NOISY_BN_DEFAULTS


def test_an_unknown_run_setting_is_an_error_not_dropped():
    from bnopt.plan.runs import RunConfig

    with pytest.raises(ValueError, match="unknown run setting 'measure_evry'"):
        RunConfig.from_dict({"dataset": "digits", "model": "vgg", "variant": "standard",
                             "lr": 0.1, "seed": 0, "measure_evry": 5})


def test_the_dln_trains_on_its_own_device():
    """dln.device (default cpu) places DLN runs; auto follows the top-level device."""
    from bnopt.plan.runs import train_settings

    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg = check_config({**base, "device": "cuda"})
    assert train_settings(cfg, "dln")["device"] == "cpu"
    assert train_settings(cfg, "vgg")["device"] == "cuda"
    follow = check_config({**base, "device": "cuda", "dln": {"device": "auto"}})
    assert train_settings(follow, "dln")["device"] == "cuda"


def test_figure_layers_follow_the_model_unless_set():
    """Unset layer keys: the paper's layers for the VGG, the same number spread over layers
    2..L-1 for another model; a layer the user sets is kept (and checked)."""
    from bnopt.plan.figure_specs import PAPER_LAYERS, figure_layers

    vgg = check_config(BASE)  # the layers the paper's Figures 1(c), 2, 3(a), 8 and 6 show
    assert {k: vgg[k] for k in PAPER_LAYERS} == {
        "fig1_layers": [3, 11], "fig2_layers": [2, 9, 13], "fig3_layers": [5, 10],
        "fig8_layers": [2, 9, 13], "fig6_layer": 11}
    cnn = check_config(with_(model="simple_cnn"))  # 5 layers: spread over 2..4
    assert (cnn["fig1_layers"], cnn["fig2_layers"], cnn["fig3_layers"], cnn["fig8_layers"],
            cnn["fig6_layer"]) == ([2, 4], [2, 3, 4], [2, 4], [2, 3, 4], 3)
    assert figure_layers("dln", "fig2_layers") == [2, 13, 24]  # 25 layers: 2, 13, 24
    assert check_config(with_(model="simple_cnn", fig3_layers=["3", "5"]))["fig3_layers"] == [3, 5]
    assert check_config(with_(model="simple_cnn", fig6_layer="null"))["fig6_layer"] == 3


def test_a_dln_built_from_the_library_gets_the_settings_the_workflow_gives_it():
    """RunConfig's defaults depend on the model: a DLN left to them is the workflow's DLN
    (Glorot, float64, full batch, its probes), not a conv net's (He init: loss 2.7e7 at step 0,
    diverged by step 31 at lr 1e-5)."""
    from bnopt.plan.runs import RunConfig, train_settings

    settings = train_settings(check_config(BASE), "dln")
    workflow = RunConfig.from_dict({**settings, "probe_multipliers":
                                    tuple(settings["probe_multipliers"]), "dataset": "dln",
                                    "model": "dln", "variant": "batchnorm", "lr": 1e-6, "seed": 0})
    library = RunConfig(dataset="dln", model="dln", variant="batchnorm", lr=1e-6, seed=0)
    assert library == workflow
    assert (library.init, library.dtype, library.batch_size) == ("glorot", "float64", 1000)
    explicit = RunConfig(dataset="dln", model="dln", variant="batchnorm", lr=1e-6, seed=0,
                         init="kaiming", steps=5)
    assert (explicit.init, explicit.steps) == ("kaiming", 5)  # what is given is kept


def _stated(text: str) -> dict:
    """(section, key) -> the comment on its line, for every key config.yaml states (top level
    and the dln section)."""
    out, section = {}, None
    for line in text.splitlines():
        m = re.match(r"^(\s*)([a-z_0-9]+):([^#]*)(#.*)?$", line)
        if not m:
            continue
        indent, key, comment = m.group(1), m.group(2), m.group(4) or ""
        if not indent:
            section = key if not m.group(3).strip() else None
            out[(None, key)] = comment
        elif section:
            out[(section, key)] = comment
    return out


def test_config_yaml_states_its_defaults_or_says_why_it_differs():
    """config.yaml holds the experiment's choices (the schema's required keys, which have no
    default) and restates other defaults for its reader; each restated value must be the
    default the schema would fill in, unless its line says why it differs ('# differs from the
    default: ...'). So the file and the schema cannot drift apart (threads did: 2 and 1)."""
    from bnopt.plan.schema import load_schema

    schema = load_schema()
    props, required = schema["properties"], set(schema["required"])
    stated = _stated((ROOT / "config.yaml").read_text())
    assert {k for s, k in stated if s is None} == set(BASE)
    for (section, key), comment in stated.items():
        if section is None and key == "dln":
            continue
        value = BASE[key] if section is None else BASE[section][key]
        if section is None and "default" not in props[key]:
            assert key in required, f"{key}: no schema default, so it must be a required key"
            continue
        default = props[key]["default"] if section is None else props["dln"]["default"][key]
        assert value == default or "differs from the default" in comment, (
            f"config.yaml {section + '.' if section else ''}{key}: {value!r}, the schema's default "
            f"is {default!r}; make them equal or say why on the line")
    # and every experiment choice is stated
    assert required <= set(BASE)


def test_every_schema_enum_is_its_registry():
    """The schema's lists of datasets, models, inits, precisions and dtypes are the registries'
    (a new model or dataset is one entry in bnopt.plan.variants / bnopt.plan.datasets and one here)."""
    from bnopt.plan.datasets import DATASETS
    from bnopt.plan.runs import DTYPE_NAMES, PRECISIONS
    from bnopt.plan.variants import ACTIVATIONS, INITS, MODEL_PATH, MODELS, OPTIMIZERS

    props = load_schema()["properties"]
    dln = props["dln"]["properties"]
    assert props["dataset"]["enum"] == [d for d in DATASETS if d != "dln"]
    assert props["model"]["anyOf"][0]["enum"] == [m for m in MODELS if m != "dln"]
    assert props["model"]["anyOf"][1]["pattern"] == MODEL_PATH
    assert props["init"]["enum"] == list(INITS) == dln["init"]["enum"]
    assert props["precision"]["enum"] == list(PRECISIONS) == props["eval_precision"]["enum"]
    assert props["dtype"]["enum"] == list(DTYPE_NAMES) == dln["dtype"]["enum"]
    assert props["activation"]["enum"] == list(ACTIVATIONS)
    assert props["optimizer"]["enum"] == list(OPTIMIZERS)


@pytest.mark.parametrize("section", ["top", "dln"])
def test_figure_lr_describes_exactly_the_figures_it_sets(section):
    """Which figures figure_lr (dln.figure_lr) sets, found by changing it: the schema's
    description names exactly those."""
    import copy

    from bnopt.plan.figure_specs import figure_specs

    other = copy.deepcopy(BASE)
    (other if section == "top" else other["dln"])["figure_lr"] = 0.777e-7
    a, b = figure_specs(check_config(BASE)), figure_specs(check_config(other))
    props = load_schema()["properties"]
    desc = (props if section == "top" else props["dln"]["properties"])["figure_lr"]["description"]
    assert set(re.findall(r"fig\d+\w*", desc)) == {f for f in a if a[f] != b[f]}
