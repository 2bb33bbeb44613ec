"""Detectron2 datasets: COCO files registered in DatasetCatalog, the built-in datasets, the dataset
mapper.
"""
