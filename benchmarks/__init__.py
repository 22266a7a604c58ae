"""Side-by-side measurements of ECNF against TorchCFM, Meta's flow_matching and torchdiffeq.

``python -m benchmarks.run_all`` runs every section and writes ``benchmarks/RESULTS.md``;
``python benchmarks/gpu.py`` measures GPU sampling throughput on a CUDA machine.
"""
