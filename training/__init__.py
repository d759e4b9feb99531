"""The network (PyTorch), its training and its ONNX export (``python -m training``).

Research use only, not for diagnosis. Modules: :mod:`training.model` (the network),
:mod:`training.onnx.export` (ONNX + manifest), :mod:`training.onnx.weights` (torch model from an
``.onnx``), :mod:`training.onnx.checkpoint` (save / load), :mod:`training.cli` (commands).
"""
