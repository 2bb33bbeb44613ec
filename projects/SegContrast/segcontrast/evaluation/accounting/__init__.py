"""The gap accounting: which error each prediction and object is, the oracle's fixes, what each fix
changes per image and over the dataset.
"""
