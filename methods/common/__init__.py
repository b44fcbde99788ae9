"""Building blocks shared by method plugins (not plugins themselves): label graphs, layers, losses,
CCA maths, the deep plugins' fit helpers (`training`) and the GNN family's incomplete-modal
training (`incomplete`)."""
