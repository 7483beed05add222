# The LSH rounds of a run ({root}: the run's results folder, the main one or a comparison
# run's): a static DAG of pool slots. Per slot: train, spectra; per round: rank, propose.
# Which candidate a slot holds is read from the round's pool.json at run time.


rule pool:
    input:
        pool_inputs,
    output:
        str(P.pool("{r}")),
    params:
        **lsh_params("pool"),
    conda:
        ENV
    log:
        f"{P.logs}/rounds/r{{r}}/pool.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "lsh search pool {params.cfg} --round {wildcards.r:q} --results {wildcards.root:q} --out {output:q} > {log:q} 2>&1"


rule train_candidate:
    input:
        data=prepared_files(),
        pool=str(P.pool("{r}")),
        parents=parent_summaries,
    output:
        str(P.slot_train("{r}", "{s}") / SUMMARY),
    params:
        **lsh_params("train_candidate"),
        data=lambda w, input: os.path.dirname(input.data[0]),
        out=lambda w, output: os.path.dirname(output[0]),
    conda:
        ENV
    log:
        f"{P.logs}/rounds/r{{r}}/s{{s}}/train.log",
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=240,
    shell:
        "lsh search train {params.cfg} --pool {input.pool:q} --slot {wildcards.s:q} --data {params.data:q}"
        " --out {params.out:q} --restart --threads {threads:q} > {log:q} 2>&1"


rule spectra_candidate:
    input:
        data=prepared_files(),
        pool=str(P.pool("{r}")),
        train=str(P.slot_train("{r}", "{s}") / SUMMARY),
    output:
        str(P.slot_spectra("{r}", "{s}")),
    params:
        **lsh_params("spectra_candidate"),
        data=lambda w, input: os.path.dirname(input.data[0]),
        train=lambda w, input: os.path.dirname(input.train),
    conda:
        ENV
    log:
        f"{P.logs}/rounds/r{{r}}/s{{s}}/spectra.log",
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=60,
    shell:
        "lsh search spectra {params.cfg} --pool {input.pool:q} --slot {wildcards.s:q} --train {params.train:q}"
        " --data {params.data:q} --out {output:q} --threads {threads:q} > {log:q} 2>&1"


rule rank:
    input:
        unpack(rank_inputs),
    output:
        str(P.ranking("{r}")),
    params:
        **lsh_params("rank"),
        dense=lambda w, input: os.path.dirname(input.dense),
    conda:
        ENV
    log:
        f"{P.logs}/rounds/r{{r}}/rank.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "lsh search rank {params.cfg} --round {wildcards.r:q} --results {wildcards.root:q} --dense {params.dense:q}"
        " --out {output:q} > {log:q} 2>&1"


rule propose:
    input:
        pool=str(P.pool("{r}")),
        ranking=str(P.ranking("{r}")),
    output:
        str(P.proposals("{r}")),
    params:
        **lsh_params("propose"),
    conda:
        ENV
    log:
        f"{P.logs}/rounds/r{{r}}/propose.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "lsh search propose {params.cfg} --round {wildcards.r:q} --results {wildcards.root:q} --out {output:q} > {log:q} 2>&1"
