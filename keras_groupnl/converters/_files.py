"""Writing a conversion's artefacts: atomically, and leaving the folder
consistent.

All files are first written under temporary names in the output folder and
flushed to disk; only then are they renamed into place, one rename each, so
an interrupted or failed conversion leaves the previous files (or none)
rather than half-written ones. Artefacts of the same `name` that this
conversion does not write (e.g. the C files of an earlier "mcu" run in a
folder now converted for "phone") are removed; other files are left alone.
"""

import os
import uuid

from keras_groupnl.converters import _artifacts


def write_outputs(files, output_dir, name, roles):
    """Writes `[(file name, bytes)]` to `output_dir`.

    Creates `output_dir` if needed (and removes the folders it created if
    writing fails). Returns `{role: path}` for the roles (role -> file name)
    given.
    """
    created = _make_dirs(output_dir)
    staged = []
    try:
        for filename, data in files:
            temporary = os.path.join(
                output_dir, f".{filename}.{uuid.uuid4().hex}.partial"
            )
            staged.append((temporary, os.path.join(output_dir, filename)))
            with open(temporary, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for temporary, final in staged:
            os.replace(temporary, final)
    except BaseException as error:
        for temporary, _ in staged:
            if os.path.exists(temporary):
                os.remove(temporary)
        for directory in reversed(created):
            if not os.listdir(directory):
                os.rmdir(directory)
        if isinstance(error, OSError):
            raise ValueError(
                f"`output_dir` cannot be written: {error}"
            ) from None
        raise
    written = {filename for filename, _ in files}
    for stale in set(_artifacts.all_file_names(name)) - written:
        path = os.path.join(output_dir, stale)
        if os.path.isfile(path):
            os.remove(path)
    return {
        role: os.path.join(output_dir, filename)
        for role, filename in roles.items()
    }


def _make_dirs(path):
    """Creates `path` and missing parents; returns those it created."""
    missing = []
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    created = []
    try:
        for directory in reversed(missing):
            os.mkdir(directory)
            created.append(directory)
    except OSError as error:
        for directory in reversed(created):
            os.rmdir(directory)
        raise ValueError(f"`output_dir` cannot be written: {error}") from None
    return created
