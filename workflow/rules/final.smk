# The final pool (the last round's survivors, or every initial candidate in `full` mode)
# trains to final.epochs from its selection checkpoints; the best by validation wins.


rule final_pool:
    input:
        final_pool_inputs,
    output:
        f"{FINAL}/pool.json",
    params:
        **lsh_params("seed", "space", "search", "final"),
        results=lambda w, output: str(Path(output[0]).parents[1]),
    conda:
        ENV
    log:
        f"{LOGS}/final/pool.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "lsh search pool {params.cfg} --round final --results {params.results} --out {output} > {log} 2>&1"


rule train_final:
    input:
        data=prepared_files(),
        pool=f"{FINAL}/pool.json",
    output:
        f"{FINAL}/f{{f}}/summary.json",
    params:
        **lsh_params("seed", "data.train_tokens", "model", "train", "sparse", "final"),
        data=lambda w, input: os.path.dirname(input.data[0]),
        out=lambda w, output: os.path.dirname(output[0]),
    conda:
        ENV
    log:
        f"{LOGS}/final/f{{f}}.log",
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=1440,
    shell:
        "lsh search train {params.cfg} --pool {input.pool} --slot {wildcards.f} --final --data {params.data}"
        " --out {params.out} --restart --threads {threads} > {log} 2>&1"


rule select:
    input:
        unpack(select_inputs),
    output:
        f"{FINAL}/selected.json",
    params:
        **lsh_params("seed", "search", "sparse"),
        results=lambda w, output: str(Path(output[0]).parents[1]),
    conda:
        ENV
    log:
        f"{LOGS}/final/select.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "lsh search select {params.cfg} --results {params.results} --out {output} > {log} 2>&1"


rule train_correlation:
    input:
        data=prepared_files(),
        pool=f"{RESULTS}/rounds/r00/pool.json",
        train=f"{RESULTS}/rounds/r00/s{{c}}/train/summary.json",
    output:
        f"{RESULTS}/correlation/c{{c}}/summary.json",
    params:
        **lsh_params("seed", "data.train_tokens", "model", "train", "sparse", "final"),
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
        "lsh search train-to-final {params.cfg} --pool {input.pool} --slot {wildcards.c} --train {params.train}"
        " --data {params.data} --out {params.out} --restart --threads {threads} > {log} 2>&1"
