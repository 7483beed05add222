# The evidence study (`snakemake study`): every configuration of a finite space trained once to
# final.epochs with what a selection could observe at every epoch (the benchmark table), then every
# selection strategy replayed on it, and the study's report. It uses the main run's params and
# results folder; the cells are independent jobs (SLURM spreads them like candidates).


rule study_cell:
    input:
        data=prepared_files(),
    output:
        str(MAIN.table_cell("{config}", "{k}") / CELL_ROWS),
    params:
        **lsh_params("study_cell"),
        data=lambda w, input: os.path.dirname(input.data[0]),
        out=lambda w, output: os.path.dirname(output[0]),
    conda:
        ENV
    log:
        f"{LOGS}/study/table/{{config}}-s{{k}}.log",
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=1440,
    shell:
        "lsh study cell {params.cfg} --config {wildcards.config:q} --seed-index {wildcards.k:q} --data {params.data:q}"
        " --out {params.out:q} --threads {threads:q} > {log:q} 2>&1"


rule study_table:
    input:
        cells=study_cells,
        data=prepared_files(),
    output:
        expand(f"{MAIN.table}/{{name}}", name=TABLE_FILES),
    params:
        **lsh_params("study_table"),
        data=lambda w, input: os.path.dirname(input.data[0]),
        out=lambda w, output: os.path.dirname(output[0]),
    conda:
        ENV
    log:
        f"{LOGS}/study/table.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "lsh study table {params.cfg} --cells {input.cells:q} --data {params.data:q} --out {params.out:q} > {log:q} 2>&1"


rule study_replay:
    input:
        rules.study_table.output,
    output:
        replays=str(MAIN.replays),
        anytime=str(MAIN.anytime),
        sensitivity=str(MAIN.sensitivity),
    params:
        **lsh_params("study_replay"),
        table=lambda w, input: os.path.dirname(input[0]),
    conda:
        ENV
    log:
        f"{LOGS}/study/replay.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=240,
    shell:
        "lsh replay {params.cfg} --table {params.table:q} --replays {output.replays:q} --anytime {output.anytime:q}"
        " --sensitivity {output.sensitivity:q} --workers {threads:q} > {log:q} 2>&1"


rule study_ls_samples:
    input:
        rules.study_table.output,
        data=prepared_files(),
    output:
        str(MAIN.ls_samples),
    params:
        **lsh_params("study_ls_samples"),
        table=lambda w, input: os.path.dirname(input[0]),
        data=lambda w, input: os.path.dirname(input.data[0]),
    conda:
        ENV
    log:
        f"{LOGS}/study/ls-samples.log",
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=1440,  # kept cells come without checkpoints: two are trained again
    shell:
        "lsh study ls-samples {params.cfg} --table {params.table:q} --data {params.data:q} --out {output:q}"
        " --threads {threads:q} > {log:q} 2>&1"


rule study_report:
    input:
        rules.study_table.output,
        replays=str(MAIN.replays),
        anytime=str(MAIN.anytime),
        sensitivity=str(MAIN.sensitivity),
        samples=str(MAIN.ls_samples),
    output:
        expand(f"{MAIN.study_report}/{{name}}", name=STUDY_REPORT_FILES),
    params:
        **lsh_params("study_report"),
        table=lambda w, input: os.path.dirname(input[0]),
        out=lambda w, output: os.path.dirname(output[0]),
    conda:
        ENV
    log:
        f"{LOGS}/study/report.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "lsh study report {params.cfg} --table {params.table:q} --replays {input.replays:q} --anytime {input.anytime:q}"
        " --sensitivity {input.sensitivity:q} --samples {input.samples:q} --out {params.out:q} > {log:q} 2>&1"


rule study_shorter_table:
    input:
        params=config["study"]["shorter"] or [],
        cells=shorter_cells,
    output:
        expand(f"{MAIN.shorter_table}/{{name}}", name=TABLE_FILES),
    params:
        **lsh_params("study_shorter_table"),
        narrowed=lambda w: shorter_overrides(),
        out=lambda w, output: os.path.dirname(output[0]),
    conda:
        ENV
    log:
        f"{LOGS}/study/shorter-table.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "lsh study table --params {input.params:q} {params.narrowed} --cells {input.cells:q} --out {params.out:q}"
        " > {log:q} 2>&1"


rule study_horizon:
    input:
        rules.study_table.output,
        shorter=rules.study_shorter_table.output,
        cells=study_cells,
    output:
        expand(f"{MAIN.horizon_report}/{{name}}", name=HORIZON_REPORT_FILES),
    params:
        **lsh_params("study_horizon"),
        table=lambda w, input: os.path.dirname(input[0]),
        shorter=lambda w, input: os.path.dirname(input.shorter[0]),
        out=lambda w, output: os.path.dirname(output[0]),
    conda:
        ENV
    log:
        f"{LOGS}/study/horizon.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "lsh study horizon {params.cfg} --table {params.table:q} --shorter {params.shorter:q} --cells {input.cells:q}"
        " --out {params.out:q} > {log:q} 2>&1"


rule study:
    input:
        study_outputs(),
