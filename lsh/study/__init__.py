"""The study: a benchmark table of a finite space trained to the end, every selection strategy
replayed on it exactly, and the statistics that say whether LS ranking beats loss ranking.

    table       the table's rows and spectra, and what a strategy can read from them
    replay      the strategies (LSH, its loss-based counterpart, Optuna, random, full training)
    statistics  correlations with bootstrap intervals, recall, means with intervals
    signals     early signals against the final outcome
    figures     the study's figures
"""
