// placeholder: filled in by the NN-ops work (issue 3)
