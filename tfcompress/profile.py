"""Model size figures: raw and gzip bytes of a flatbuffer."""

import gzip


def tflite_sizes(flatbuffer: bytes) -> dict:
    """{'bytes': raw size, 'gzip_bytes': size after gzip -9}: gzip shows what sparsity and
    clustering save, since the flatbuffer stores zeros and shared values densely."""
    return {"bytes": len(flatbuffer), "gzip_bytes": len(gzip.compress(flatbuffer, 9, mtime=0))}
