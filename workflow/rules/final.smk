# The final pool of a run (the last round's survivors, or every initial candidate in `full`
# mode) trains to final.epochs from its selection checkpoints; the best by validation wins.


rule final_pool:
    input:
        final_pool_inputs,
    output:
        str(P.final_pool),
    params:
        **lsh_params("final_pool"),
    conda:
        ENV
    log:
        f"{P.logs}/final/pool.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "lsh search pool {params.cfg} --round final --results {wildcards.root:q} --out {output:q} > {log:q} 2>&1"


rule train_final:
    input:
        data=prepared_files(),
        pool=str(P.final_pool),
    output:
        str(P.final_train("{f}") / SUMMARY),
    params:
        **lsh_params("train_final"),
        data=lambda w, input: os.path.dirname(input.data[0]),
        out=lambda w, output: os.path.dirname(output[0]),
    conda:
        ENV
    log:
        f"{P.logs}/final/f{{f}}.log",
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=1440,
    shell:
        "lsh search train {params.cfg} --pool {input.pool:q} --slot {wildcards.f:q} --final --data {params.data:q}"
        " --out {params.out:q} --restart --threads {threads:q} > {log:q} 2>&1"


rule select:
    input:
        unpack(select_inputs),
    output:
        str(P.selected),
    params:
        **lsh_params("select"),
        dense=lambda w, input: os.path.dirname(input.dense) if "dense" in input.keys() else str(DENSE),
    conda:
        ENV
    log:
        f"{P.logs}/final/select.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "lsh search select {params.cfg} --results {wildcards.root:q} --dense {params.dense:q} --out {output:q} > {log:q} 2>&1"


rule train_correlation:
    input:
        data=prepared_files(),
        pool=str(MAIN.pool(0)),
        train=str(MAIN.slot_train(0, "{c}") / SUMMARY),
    output:
        str(MAIN.correlation_train("{c}") / SUMMARY),
    params:
        **lsh_params("train_correlation"),
        data=lambda w, input: os.path.dirname(input.data[0]),
        train=lambda w, input: os.path.dirname(input.train),
        out=lambda w, output: os.path.dirname(output[0]),
    conda:
        ENV
    log:
        f"{LOGS}/correlation/c{{c}}.log",
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=1440,
    shell:
        "lsh search train-to-final {params.cfg} --pool {input.pool:q} --slot {wildcards.c:q} --train {params.train:q}"
        " --data {params.data:q} --out {params.out:q} --restart --threads {threads:q} > {log:q} 2>&1"
