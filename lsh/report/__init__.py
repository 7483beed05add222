"""The report as a library: a finished run read once, and what is computed from it.

    run.py          reading a run: candidates, rankings, the dense reference (load_run)
    tables.py       Table 1, budget, wall seconds, Markdown
    correlation.py  distances over epochs, early measures against final perplexity
    figures.py      the paper's figures
    summary.py      summary.md and metrics.json
    study.py        the study's Markdown and its verdict in words

`lsh.stages.report` and `lsh.stages.study` write the files.
"""
