"""Datasets in one schema: synthetic referring scenes, benchmark builders, augmentation, collation."""

from .features import referring_features
from .masks import decode_rle, encode_mask, mask_to_bbox, merge_instances, polygons_to_rle

__all__ = ["decode_rle", "encode_mask", "mask_to_bbox", "merge_instances", "polygons_to_rle", "referring_features"]
