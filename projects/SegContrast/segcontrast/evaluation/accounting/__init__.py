"""The gap accounting: which error each prediction and object is, and what fixing it gains.

``assignment`` gives every error its type, ``fixes`` builds the oracle's fixed predictions,
``image_variants`` computes what each fix changes in one image, ``dataset_deltas`` what it
changes in the dataset's headline metrics.
"""
