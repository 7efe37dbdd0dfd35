"""What `convert` shows while it works: stage lines and Keras progress bars."""

import sys


class Progress:
    """Stage messages and `keras.utils.Progbar`s; silent with verbose=0."""

    def __init__(self, verbose):
        self.verbose = verbose

    def stage(self, message):
        if self.verbose:
            print(f"[keras-groupnl] {message}", flush=True)

    def bar(self, total, label):
        """A function `advance(step=1)` driving a new progress bar."""
        if not self.verbose or total <= 0:
            return None
        import keras

        self.stage(label)
        # Redirected output gets a line every few seconds, not a flood.
        interactive = getattr(sys.stdout, "isatty", lambda: False)()
        bar = keras.utils.Progbar(
            target=total, verbose=1, interval=0.1 if interactive else 5.0
        )
        state = {"n": 0}

        def advance(step=1):
            state["n"] += step
            bar.update(state["n"])

        return advance
