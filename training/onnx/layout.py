"""How a mammo-review ``.onnx`` file holds the network: names and metadata keys shared by the
exporter (:mod:`training.onnx.export`) and the weight read-back (:mod:`training.onnx.weights`).

Initializers keep the torch ``state_dict`` names prefixed with :data:`STATE_PREFIX`; the model
config travels as JSON under the metadata key :data:`META_CONFIG`, the prefix under
:data:`META_PREFIX`. Outputs appear in :data:`OUTPUT_ORDER` (what the config switches off is absent).
"""

from __future__ import annotations

__all__ = ["OPSET", "OUTPUT_ORDER", "STATE_PREFIX", "META_CONFIG", "META_PREFIX", "META_VERSION", "META_HEIGHT"]

OPSET = 17
#: Every output the network can have, in graph order.
OUTPUT_ORDER: tuple[str, ...] = (
    "malignancy", "acr", "density", "view", "z", "reconstruction", "evidence", "lesion"
)
#: Initializer names are ``STATE_PREFIX + <state_dict key>``.
STATE_PREFIX = "model."
#: ONNX metadata keys: the model config (JSON), the initializer name prefix, version and input height.
META_CONFIG = "mammo_review.config"
META_PREFIX = "mammo_review.state_prefix"
META_VERSION = "mammo_review.version"
META_HEIGHT = "mammo_review.input_height"
