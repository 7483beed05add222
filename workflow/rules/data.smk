# Data stage: PTB text (downloaded when missing) -> token ids, vocabulary and meta.json.


rule prepare:
    output:
        prepared_files(),
    params:
        **lsh_params("seed", "data"),
    conda:
        ENV
    log:
        f"{LOGS}/prepare.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "lsh prepare {params.cfg} > {log} 2>&1"
