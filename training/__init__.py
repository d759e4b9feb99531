"""The network (PyTorch), its training and its ONNX export (``python -m training``).

Research use only, not for diagnosis. Modules: :mod:`training.model` (the network),
:mod:`training.onnx.export` (ONNX export + manifest, verified; its command ``export-onnx`` is
:mod:`training.onnx.command`), :mod:`training.onnx.weights` (torch model from an ``.onnx``),
:mod:`training.onnx.checkpoint` (save / load), :mod:`training.onnx.source` (a model from either),
:mod:`training.onnx.layout` (names both sides of the ``.onnx`` share), :mod:`training.cli` (commands).
"""
