"""VarGFaceNet in PyTorch, its ONNX export, and the tools around them."""
