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
#: own work); ``inf`` keeps everything in memory. Defined here, not in ``spill``, so the
#: CLI can show it without importing numpy.
DEFAULT_BUDGET_MIB = 32.0
