"""The hooked run of both models and its verdicts.

``options`` checks every option once; ``hooks`` records a model's layers;
``engine`` runs the steps and compares record by record (``spill`` keeps
base records past a memory budget); ``numerics`` is the elementwise verdict
and its tolerances; ``results`` turns comparisons into divergences and the
report; ``selection`` (black/white lists), ``randomness`` (random ops) and
``oplevel`` (framework API calls) narrow and explain the run.
"""

#: In-memory budget for base records. Past it, strict mode's extra memory stays bounded
#: whatever the model's size, at the cost of disk traffic (mostly hidden behind the models'
#: own work); ``inf`` keeps everything in memory. The default is what a spill holds itself
#: (its write buffers and read-ahead, 64 + 64 MiB): below it, spilling costs more memory than
#: it saves (ResNet-18 at batch 8, 112²: peak 1010 MiB at 32, 951 at 128, as fast).
#: Defined here, not in ``spill``, so the CLI can show it without importing numpy.
DEFAULT_BUDGET_MIB = 128.0
