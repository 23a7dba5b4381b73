"""Recording: the camera's H.264 cut into segments without re-encoding (source -> segmenter ->
index -> clips), kept inside a disk budget, exported as clips with signed evidence manifests."""
