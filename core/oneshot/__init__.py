"""One-shot, layer-wise pruning of transformer models: magnitude, Wanda and SparseGPT, with
uniform or OWL sparsity allocation, calibrated block by block (see `core.oneshot.engine`)."""
