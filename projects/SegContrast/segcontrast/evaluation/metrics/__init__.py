"""Metric functions over per-image statistics: semantic, instance, COCO AP, PQ, boundary IoU,
bootstrap.
"""
