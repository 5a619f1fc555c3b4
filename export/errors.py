"""The one error the checkpoint loaders raise (re-exported by ``export.checkpoint``)."""


class CheckpointError(ValueError):
    """A checkpoint the exporter cannot read, with what was found."""
