"""The dump format (``docs/dump.md``): names, constants and the layer records a rank's header holds.

::

    DIR/
      rank_0.json              written last by rank 0: the dump of that rank is complete
      step_0/
        rank_0/
          tensors.npz          one array per record (no pickle)
          manifest.json        the records in the order the model produced them
      step_1/...

Records are keyed by the dotted layer path (or full tensor name) exactly as
``named_modules()`` / ``named_sublayers()`` / ``named_parameters()`` give
it, so two dumps compare through a layer map without the models loaded.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from padiff_graph.core.records import LayerInfo
from padiff_graph.run.hooks import RecordKey

FORMAT = "padiff-graph-dump"
RANK_FOLDER = re.compile(r"\.?rank_(\d+)(?:\.partial)?")
#: 2: with checksums (``docs/dump.md``); version 1 dumps, written before them, are read too
FORMAT_VERSION = 2
#: the npz file :func:`dump` writes every record of a step into
TENSORS = "tensors.npz"
#: the stages a dump records
RECORD_STAGES = ("input", "forward", "backward", "loss", "grad", "weights")


def record_name(key: RecordKey) -> str:
    """The npz member of a record: ``forward:mlp.fc1:0:0``, ``grad:mlp.fc1.weight:0:0``, ``loss::0:0``."""
    return f"{key.stage}:{key.path}:{key.call}:{key.index}"


def layer_dict(layer: LayerInfo) -> dict[str, Any]:
    entry = asdict(layer)
    entry["tensors"] = [{**asdict(t), "kind": t.kind.value, "shape": list(t.shape)} for t in layer.tensors]
    return entry
