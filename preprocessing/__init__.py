"""Dataset preparation: Caltech256-style class folders to the processed training format.

Modules: `image_dir_preprocessor` (the command and `preprocess()`), `folders` (class folders,
labels, the seeded stratified split), `image_io` (decoding one messy image file). Nothing is
imported here, so the preprocessor starts without importing TensorFlow.
"""
