"""Training: truncated BPTT with SGD, then non-monotonically triggered averaged SGD.

One loop trains the dense reference, every candidate and the final survivors
(algorithm-notes section 2). After every epoch it validates, decides the NT-ASGD
switch, updates a sparse model's topology, and writes an atomic checkpoint
`epoch-NNN.pt` plus a line of `metrics.jsonl`; `epoch-000.pt` is the initialisation.

What a checkpoint holds, and why in two parts. Validation, the checkpoint's `model` and
`masks`, and everything later read from it (spectra, the loss ranker, test perplexity)
describe the model *as trained* in that epoch, as in Selfish-RNN: the prune-and-regrow
happens after validation and takes effect in the next epoch. A regrown weight starts at
zero, so a model measured after the update would hold only part of its mask's weights.
The state the next epoch starts from, after the update, travels beside it: `weights`
(the raw training weights) and `next_masks` (the topology after the update), with the
optimizer, averaging, sparse and RNG states of that moment. A run resumes bitwise
exactly from its last checkpoint, and a survivor continued from a checkpoint trains
exactly as if it had never stopped.

    loop.py         the Trainer: one epoch's training, validation, switch and topology update
    averaging.py    the averaged weights of NT-ASGD
    checkpoints.py  saving, safe loading, the run config a resume must match
    run.py          a run in a folder: train(spec, corpus, out, epochs), resume, summary
"""

from lsh.training.averaging import Averager, swapped_in
from lsh.training.checkpoints import (
    CHECKPOINT_FORMAT,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from lsh.training.loop import Trainer, batchify, divergence, evaluate, perplexity, should_switch_to_asgd, windows
from lsh.training.run import RunSpec, build_trainer, candidate_spec, dense_spec, summarize, train

__all__ = [
    "Averager", "swapped_in", "CHECKPOINT_FORMAT", "checkpoint_path", "list_checkpoints", "load_checkpoint",
    "model_from_checkpoint", "save_checkpoint", "Trainer", "batchify", "divergence", "evaluate", "perplexity",
    "should_switch_to_asgd", "windows", "RunSpec", "build_trainer", "candidate_spec", "dense_spec", "summarize",
    "train",
]
