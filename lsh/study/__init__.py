"""The study: a benchmark table of a finite space trained to the end, every selection strategy
replayed on it exactly, and the statistics that say whether LS ranking beats loss ranking.

    cells       the table's configurations and training seeds
    table       the table's rows and spectra, and what a strategy can read from them
    strategies  the strategies compared, as data (kind, search settings, budget; names derived)
    replay      each strategy run on the table (LSH, the other rankers, i-Epoch, Optuna, random, full)
    statistics  correlations with bootstrap intervals, recall, means with intervals
    signals     early signals against the final outcome
    verdict     the verdict's numbers, each with its interval
    calibration the criteria of a regime in which candidates learn before they are ranked
    figures     the study's figures
"""
