# The comparison set (`snakemake compare`): on this preset and seed, LSH and the loss-based
# search with TPE, ATPE and grid, and the full-training search (workflow/comparison.yaml),
# each a run of its own under <results>/compare/<method>/ made by the ordinary rules (the
# same scheduler, resources and SLURM profile), then one Table 1 across them.


rule compare:
    input:
        unpack(compare_inputs),
    output:
        str(MAIN.compare_report / REPORT["table1_md"]),
    params:
        **lsh_params("compare"),
        results=lambda w, input: str(Path(input.selected).parents[1]),
        dense=lambda w, input: os.path.dirname(input.dense[0]) if PLAN.rounds else str(DENSE),
        runs=[str(MAIN.compare(m).root) for m in COMPARISON],  # a list: {params.runs:q} quotes each
        data=lambda w, input: os.path.dirname(input.data[0]),
        out=lambda w, output: os.path.dirname(output[0]),
    conda:
        ENV
    log:
        f"{LOGS}/compare/report.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "lsh report {params.cfg} --results {params.results:q} --dense {params.dense:q} --data {params.data:q}"
        " --compare {params.runs:q} --out {params.out:q} > {log:q} 2>&1"
