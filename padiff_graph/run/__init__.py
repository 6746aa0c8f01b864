"""The hooked run of both models and its verdicts.

``options`` checks every option once; ``hooks`` records a model's layers;
``engine`` runs the steps and compares record by record (``spill`` keeps
base records past a memory budget); ``numerics`` is the elementwise verdict
and its tolerances; ``results`` turns comparisons into divergences and the
report; ``selection`` (black/white lists), ``randomness`` (random ops) and
``oplevel`` (framework API calls) narrow and explain the run.
"""
