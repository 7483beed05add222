# LS-based hyperpruning as a Snakemake workflow: this file only sets things up.
# The rules live in workflow/rules/*.smk, every rule is a one-line call of the `lsh`
# command line, and all logic is in the `lsh` package.
#   snakemake --cores all                                        # the default demo (params.yaml)
#   snakemake --cores all --configfile workflow/presets/smoke.yaml
#   snakemake study --cores all --configfile workflow/presets/study.yaml   # the evidence study (targets before --configfile)
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


# The first page of `snakemake --report`: the selected configuration against the dense model, then the figures
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


# {root}: a run's results folder; {r}, {s}, {f}, {c}: two-digit round, slot, final and correlation numbers
wildcard_constraints:
    root=root_pattern(),
    r=r"\d\d",
    s=r"\d\d",
    f=r"\d\d",
    c=r"\d\d",
    config=r"dense|g\d\d|q\d\d\d",
    k=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/dense.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/final.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/study.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
        rules.report.output,
