# The comparison set (`snakemake compare`): on this preset and seed, LSH and the loss-based
# search with TPE, ATPE and grid, and the full-training search, each a run of its own under
# results/compare/<method>/, then one Table 1 across them (results/compare/report/table1.md).


rule compare_params:
    output:
        f"{RESULTS}/compare/{{method}}/params.yaml",
    params:
        **lsh_params(*config),
        overrides=lambda w: comparison_overrides(w.method),
    conda:
        ENV
    log:
        f"{LOGS}/compare/{{method}}-params.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "lsh params {params.cfg} {params.overrides} > {output} 2> {log}"


rule compare_run:
    input:
        params=f"{RESULTS}/compare/{{method}}/params.yaml",
        data=prepared_files(),
    output:
        f"{RESULTS}/compare/{{method}}/final/selected.json",
    conda:
        ENV
    log:
        f"{LOGS}/compare/{{method}}.log",
    threads: 64  # capped at --cores: the nested run takes every core it is given
    resources:
        mem_mb=train_mem_mb,
        runtime=2880,
    shell:
        "snakemake {output} --nolock --cores {threads} --configfile {input.params} > {log} 2>&1"


rule compare:
    input:
        unpack(compare_inputs),
    output:
        f"{RESULTS}/compare/report/table1.md",
    params:
        **lsh_params("seed", "model", "sparse", "search", "final", "report"),
        results=lambda w, input: os.path.dirname(os.path.dirname(input.selected)),
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
        "lsh report {params.cfg} --results {params.results} --out {params.out} > {log} 2>&1"
