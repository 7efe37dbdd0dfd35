"""The NLF seed a hub backbone writes in its config."""

import random

# Layer k draws from `seed + k`; keep the sum a 31-bit integer.
_MAX_SEED = 2**30


def concrete(seed):
    """`seed`, or for `None` a seed drawn now.

    A keras-hub backbone is rebuilt from its config when a preset loads, so
    its config must say which sinusoids its GroupNL layers draw. `None` is
    replaced by a draw from Python's `random`, which
    `keras.utils.set_random_seed` seeds, as the GroupNL layers themselves
    do with `seed=None`. Any other value is returned for the model's own
    checks to judge.
    """
    return random.randint(0, _MAX_SEED) if seed is None else seed
