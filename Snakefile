# LS-based hyperpruning as a Snakemake workflow: this file only sets things up.
# The rules live in workflow/rules/*.smk, every rule is a one-line call of the `lsh`
# command line, and all logic is in the `lsh` package.
#   snakemake --cores all                                        # the default demo (params.yaml)
#   snakemake --cores all --configfile workflow/presets/smoke.yaml
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/dense.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/final.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/compare.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
        rules.report.output,
