# The run's report (results/report/): tables and figures from the finished run, embedded
# in `snakemake --report results/report.html` with the captions of workflow/report/; its first
# page, workflow/report/workflow.rst (the Snakefile's `report:`), shows the page.rst `lsh report` writes.
REPORT_DIR = MAIN.report

# Every file `lsh report` writes (lsh.layout.REPORT_FILES: the LS figures only with selection
# rounds); a file with a category goes into the HTML report with its caption, workflow/report/<key>.rst.
shown = lambda f: report(f"{REPORT_DIR}/{f.name}", caption=f"../report/{f.key}.rst", category=f.category)
REPORT_OUTPUTS = {
    f.key: shown(f) if f.category else f"{REPORT_DIR}/{f.name}" for f in report_files(bool(PLAN.rounds))
}


rule report:
    input:
        unpack(report_inputs),
    output:
        **REPORT_OUTPUTS,
    params:
        **lsh_params("report"),
        results=lambda w, input: str(Path(input.selected).parents[1]),
        data=lambda w, input: os.path.dirname(input.data[0]),
        dense=lambda w, input: os.path.dirname(input.dense[0]) if PLAN.rounds else str(DENSE),
        out=lambda w, output: os.path.dirname(output.summary),
    conda:
        ENV
    log:
        f"{LOGS}/report.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "lsh report {params.cfg} --results {params.results:q} --dense {params.dense:q} --data {params.data:q}"
        " --out {params.out:q} > {log:q} 2>&1"
