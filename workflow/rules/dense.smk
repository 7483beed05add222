# Dense reference: trained like every candidate, a checkpoint kept for every epoch the
# search compares against (0 to the last epoch any candidate reaches in selection). Its
# training is marked done by summary.json (written last, also when it diverged); the
# checkpoints live beside it, so a diverged run keeps them and the next stage says why.
# The comparison set shares it.


rule train_dense:
    input:
        prepared_files(),
    output:
        metrics=dense_outputs()["metrics"],
        curves=dense_outputs()["curves"],
        summary=dense_outputs()["summary"],
    params:
        **lsh_params("train_dense"),
        epochs=DENSE_EPOCHS,
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
        "lsh train {params.cfg} --data {params.data:q} --out {params.out:q} --epochs {params.epochs:q}"
        " --dense --keep all --resume --restart --test --spectra --threads {threads:q} > {log:q} 2>&1"


rule spectra_dense:
    input:
        data=prepared_files(),
        train=dense_outputs()["summary"],
    output:
        dense_outputs()["spectra"],
    params:
        **lsh_params("spectra_dense"),
        data=lambda w, input: os.path.dirname(input.data[0]),
        train=lambda w, input: os.path.dirname(input.train),
        epochs=DENSE_EPOCHS,
    conda:
        ENV
    log:
        f"{LOGS}/dense/spectra.log",
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=60,
    shell:
        "lsh search dense-spectra {params.cfg} --train {params.train:q} --epochs {params.epochs:q}"
        " --data {params.data:q} --out {output:q} --threads {threads:q} > {log:q} 2>&1"


rule train_dense_final:
    input:
        data=prepared_files(),
        dense=dense_outputs()["summary"],
    output:
        str(MAIN.dense_final / SUMMARY),
    params:
        **lsh_params("train_dense_final"),
        data=lambda w, input: os.path.dirname(input.data[0]),
        init=lambda w, input: f"{os.path.dirname(input.dense)}/epoch-{DENSE_EPOCHS:03d}.pt",
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
        "lsh train {params.cfg} --dense --init {params.init:q} --data {params.data:q} --out {params.out:q}"
        " --epochs {params.epochs:q} --keep last --resume --restart --test --threads {threads:q} > {log:q} 2>&1"
