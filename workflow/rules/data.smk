# Data stage: PTB text (downloaded when missing) -> token ids, vocabulary and meta.json.


rule prepare:
    output:
        kept_if_failed(prepared_files()),
    params:
        **lsh_params("prepare"),
    conda:
        ENV
    log:
        f"{LOGS}/prepare.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "lsh prepare {params.cfg} > {log:q} 2>&1"


# What produced a run (numerics, CPU capability, versions): written once, where its jobs run,
# and shown by the report. No job reads it as input, so it triggers no rerun of finished work;
# a job continuing a checkpoint made elsewhere compares the checkpoint's own record.
rule environment:
    output:
        str(P.environment),
    params:
        **lsh_params("environment"),
    conda:
        ENV
    log:
        f"{P.logs}/environment.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "lsh environment {params.cfg} --out {output:q} > {log:q} 2>&1"
