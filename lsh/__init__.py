"""LS-based hyperpruning (LSH) of recurrent language models.

The package holds all the logic; the Snakemake rules and DVC stages only call the
`lsh` command line (`lsh.cli`).
"""

__version__ = "0.1.0"
