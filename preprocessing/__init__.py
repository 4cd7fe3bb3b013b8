"""Dataset preparation: Caltech256-style class folders to the processed training format.

Modules: `image_dir_preprocessor` (`preprocess()`: the run, its output folder and tables),
`workers` (decoding many images in processes), `image_io` (decoding one messy image file),
`folders` (class folders, labels, the seeded stratified split), `job` (`keras-googlenet
preprocess`). Nothing imports TensorFlow, so the job starts in well under a second.
"""
