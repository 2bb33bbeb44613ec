"""Metrics: semantic, instance, COCO mask AP, PQ, boundary IoU, and the bootstrap."""
