"""Pipelines. Importing this package registers the ``referring-segmentation`` task."""
