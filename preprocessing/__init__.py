"""Dataset preparation: Caltech256-style class folders to the processed training format."""
