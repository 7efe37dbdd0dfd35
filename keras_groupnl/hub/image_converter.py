"""`FamilyImageConverter`: an ImageConverter with its family's normalisation."""

from keras_hub.layers import ImageConverter

# Stands for "not given" (`None` means "no scaling" to ImageConverter).
_FAMILY = object()


class FamilyImageConverter(ImageConverter):
    """A keras-hub `ImageConverter` whose defaults normalise for a family.

    The base of the family converters (`GroupNLResNetImageConverter`, ...):
    `scale` and `offset` default to the class's `default_scale` and
    `default_offset`, the normalisation its application expects of images
    in [0, 255]; pass them (`None` for none) for other inputs. The config
    holds the values used, so a preset keeps them. Other arguments as
    `keras_hub.layers.ImageConverter` (`image_size`, `interpolation`, ...).
    """

    default_scale = None
    default_offset = None

    def __init__(
        self, image_size=None, scale=_FAMILY, offset=_FAMILY, **kwargs
    ):
        super().__init__(
            image_size=image_size,
            scale=self.default_scale if scale is _FAMILY else scale,
            offset=self.default_offset if offset is _FAMILY else offset,
            **kwargs,
        )
