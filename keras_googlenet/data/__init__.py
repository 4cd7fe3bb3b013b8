"""Input: datasets from the processed CSVs, augmentation, CIFAR-10, and the demo's shapes."""
