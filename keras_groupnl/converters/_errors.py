"""The error raised when a model cannot be converted as the target claims."""


class ConversionError(ValueError):
    """The model cannot be converted into what the target promises.

    Raised instead of writing a model that is not what it claims to be (not
    full-integer, or using an operator the target runtime lacks), or that
    fails its verification. `layer` and `op` name the Keras layer and the
    TFLite operator at fault when they are known.
    """

    def __init__(self, message, layer=None, op=None):
        super().__init__(message)
        self.layer = layer
        self.op = op
