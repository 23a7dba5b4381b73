"""Vision for one camera: privacy masks, motion, regions, detection, tracks, zones, events
and snapshots, composed frame by frame by `edge.vision.pipeline.FramePipeline`; the worker
processes that run it (camera, detection, supervisor) live here too.

Nothing is imported here: the node's main process imports `edge.vision.events` without
loading numpy or OpenCV.
"""
