"""The LSH search as a library: its space, proposers and ranking (its schedule, pure arithmetic that
config validates with, is one floor down: lsh/schedule.py). What the workflow's
jobs do with files (build a pool, rank a round, propose, select) lives in `lsh.stages`.

    space.py      configurations, the grid, hyperopt's view of the space
    proposers.py  TPE, ATPE, random and grid proposals (PROPOSERS)
    ranking.py    LS and loss distances to the dense reference, and the order (EMBEDDINGS, DISTANCES)

Nothing is imported here, so that importing one module of the package stays cheap.
"""
