# Dense reference: trained like every candidate, a checkpoint kept for every epoch the
# search compares against (0 to the last epoch any candidate reaches in selection).


rule train_dense:
    input:
        prepared_files(),
    output:
        checkpoints=dense_checkpoints(),
        metrics=f"{RESULTS}/dense/metrics.jsonl",
        curves=f"{RESULTS}/dense/curves.json",
        summary=f"{RESULTS}/dense/summary.json",
    params:
        cfg=lsh_args("seed", "model", "train"),
        epochs=PLAN.last_epoch,
        data=lambda w, input: os.path.dirname(input[0]),
        out=lambda w, output: os.path.dirname(output.summary),
    conda:
        ENV
    log:
        f"{LOGS}/dense/train.log",
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=240,
    shell:
        "lsh train {params.cfg} --data {params.data} --out {params.out} --epochs {params.epochs}"
        " --dense --keep all --resume --test --threads {threads} > {log} 2>&1"


rule spectra_dense:
    input:
        data=prepared_files(),
        checkpoints=dense_checkpoints(),
    output:
        f"{RESULTS}/dense/spectra.json",
    params:
        cfg=lsh_args("seed", "lyapunov"),
        data=lambda w, input: os.path.dirname(input.data[0]),
        train=lambda w, input: os.path.dirname(input.checkpoints[0]),
        epochs=PLAN.last_epoch,
    conda:
        ENV
    log:
        f"{LOGS}/dense/spectra.log",
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=60,
    shell:
        "lsh search dense-spectra {params.cfg} --train {params.train} --epochs {params.epochs}"
        " --data {params.data} --out {output} --threads {threads} > {log} 2>&1"


rule train_dense_final:
    input:
        data=prepared_files(),
        last=f"{RESULTS}/dense/epoch-{PLAN.last_epoch:03d}.pt",
    output:
        f"{RESULTS}/dense-final/summary.json",
    params:
        cfg=lsh_args("seed", "model", "train", "final"),
        data=lambda w, input: os.path.dirname(input.data[0]),
        out=lambda w, output: os.path.dirname(output[0]),
        epochs=config["final"]["epochs"],
    conda:
        ENV
    log:
        f"{LOGS}/dense/final.log",
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=1440,
    shell:
        "lsh train {params.cfg} --dense --init {input.last} --data {params.data} --out {params.out}"
        " --epochs {params.epochs} --keep last --test --threads {threads} > {log} 2>&1"
