"""What TensorFlow, LiteRT and TFLite Micro print from C++.

Their native code writes to file descriptor 2 directly (e.g. the
quantizer's "fully_quantize: 0, inference_type: 6, ..." lines), past
Python's `sys.stderr`. `captured()` collects it, to read or to drop.
"""

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def captured():
    """Captures what native code writes to file descriptor 2.

    Yields a dict whose `"text"` holds the captured text once the block has
    ended.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    result = {"text": ""}
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield result
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            result["text"] = capture.read().decode("utf-8", "replace")
