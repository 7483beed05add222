# The LSH rounds: a static DAG of pool slots. Per slot: train, spectra; per round: rank,
# propose. Which candidate a slot holds is read from the round's pool.json at run time.


wildcard_constraints:
    r=r"\d\d",
    s=r"\d\d",
    f=r"\d\d",
    method=r"[a-z-]+",
    c=r"\d\d",


rule pool:
    input:
        pool_inputs,
    output:
        f"{ROUND}/pool.json",
    params:
        **lsh_params("seed", "space", "search"),
        results=lambda w, output: str(Path(output[0]).parents[2]),
    conda:
        ENV
    log:
        f"{LOGS}/rounds/r{{r}}/pool.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "lsh search pool {params.cfg} --round {wildcards.r} --results {params.results} --out {output} > {log} 2>&1"


rule train_candidate:
    input:
        data=prepared_files(),
        pool=f"{ROUND}/pool.json",
        parents=parent_summaries,
    output:
        f"{SLOT}/train/summary.json",
    params:
        **lsh_params(*candidate_sections()),
        data=lambda w, input: os.path.dirname(input.data[0]),
        out=lambda w, output: os.path.dirname(output[0]),
    conda:
        ENV
    log:
        f"{LOGS}/rounds/r{{r}}/s{{s}}/train.log",
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=240,
    shell:
        "lsh search train {params.cfg} --pool {input.pool} --slot {wildcards.s} --data {params.data}"
        " --out {params.out} --restart --threads {threads} > {log} 2>&1"


rule spectra_candidate:
    input:
        data=prepared_files(),
        pool=f"{ROUND}/pool.json",
        train=f"{SLOT}/train/summary.json",
    output:
        f"{SLOT}/spectra.json",
    params:
        **lsh_params("seed", "lyapunov"),
        data=lambda w, input: os.path.dirname(input.data[0]),
        train=lambda w, input: os.path.dirname(input.train),
    conda:
        ENV
    log:
        f"{LOGS}/rounds/r{{r}}/s{{s}}/spectra.log",
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=60,
    shell:
        "lsh search spectra {params.cfg} --pool {input.pool} --slot {wildcards.s} --train {params.train}"
        " --data {params.data} --out {output} --threads {threads} > {log} 2>&1"


rule rank:
    input:
        unpack(rank_inputs),
    output:
        f"{ROUND}/ranking.csv",
    params:
        **lsh_params("seed", "search"),
        results=lambda w, output: str(Path(output[0]).parents[2]),
    conda:
        ENV
    log:
        f"{LOGS}/rounds/r{{r}}/rank.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "lsh search rank {params.cfg} --round {wildcards.r} --results {params.results} --out {output} > {log} 2>&1"


rule propose:
    input:
        pool=f"{ROUND}/pool.json",
        ranking=f"{ROUND}/ranking.csv",
    output:
        f"{ROUND}/proposals.json",
    params:
        **lsh_params("seed", "space", "search"),
        results=lambda w, output: str(Path(output[0]).parents[2]),
    conda:
        ENV
    log:
        f"{LOGS}/rounds/r{{r}}/propose.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "lsh search propose {params.cfg} --round {wildcards.r} --results {params.results} --out {output} > {log} 2>&1"
