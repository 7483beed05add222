"""The LSH search as a library: its schedule, space, proposers and ranking. What the workflow's
jobs do with files (build a pool, rank a round, propose, select) lives in `lsh.stages`.

    schedule.py   the rounds the params imply (plan)
    space.py      configurations, the grid, hyperopt's view of the space
    proposers.py  TPE, ATPE, random and grid proposals (PROPOSERS)
    ranking.py    LS and loss distances to the dense reference, and the order (EMBEDDINGS, DISTANCES)

Nothing is imported here, so that `lsh.search.schedule` stays cheap for the workflow.
"""
