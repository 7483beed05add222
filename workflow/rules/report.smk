# The run's report (results/report/): tables and figures from the finished run, embedded
# in `snakemake --report results/report.html` with the captions of workflow/report/; its first
# page, workflow/report/workflow.rst (the Snakefile's `report:`), shows summary.md's selection.
REPORT = MAIN.report

# Every file `lsh report` writes (lsh.stages.report.report_files); the LS figures only with
# selection rounds. report(...) puts a file with its caption into the HTML report.
shown = lambda name, caption, category: report(
    f"{REPORT}/{name}", caption=f"../report/{caption}.rst", category=category
)
REPORT_OUTPUTS = {
    "summary": shown("summary.md", "summary", "1. Result"),
    "table1": shown("table1.csv", "table1", "1. Result"),
    "table1_md": f"{REPORT}/table1.md",
    "budget": shown("budget.md", "budget", "1. Result"),
    "metrics": f"{REPORT}/metrics.json",
    "perplexity": shown("perplexity_curves.png", "perplexity_curves", "2. Search"),
    "correlation": shown("correlation.png", "correlation", "3. Correlation"),
    "correlation_table": shown("correlation.csv", "correlation_table", "3. Correlation"),
    "correlation_points": shown("correlation_points.csv", "correlation_points", "3. Correlation"),
    **(
        {
            "ls_curves": shown("ls_curves.png", "ls_curves", "2. Search"),
            "distance": shown("distance_curves.png", "distance_curves", "2. Search"),
            "ls_space": shown("ls_space.png", "ls_space", "2. Search"),
        }
        if PLAN.rounds
        else {}
    ),
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
