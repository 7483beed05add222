"""What one workflow job does: read its input files through the layout, call the library, write
its outputs atomically. One module per job, in the order a candidate meets them:

    pool.py      a round's pool: round 0 from the proposer, later rounds survivors then newcomers, the final pool
    slot.py      train one slot's candidate to its epoch (a survivor continues from its parent checkpoint)
    spectra.py   the Lyapunov spectra of a slot's new checkpoints (and of the dense reference)
    rank.py      score a round's candidates against the dense reference; the survivors
    propose.py   new candidates from the survivors' history
    select.py    the best finalist, its history and the budget spent
    report.py    the run's report
    train.py     `lsh train`: any one training run (the dense reference's, for one)

The library below them (search, training, lyapunov, sparse, models, data, report) knows nothing
of files it was not handed.
"""
