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
    threads: 2
    resources:
        mem_mb=train_mem_mb,
        runtime=240,
    shell:
        "lsh train {params.cfg} --data {params.data} --out {params.out} --epochs {params.epochs}"
        " --dense --keep all --resume --test --threads {threads} > {log} 2>&1"
