"""CLIP models: the project's tiny default config, loading by name/tag/hub/folder/checkpoint, encoding, training."""

from curate.models.loading import DEFAULT_MODEL, LoadedModel, ModelSpec, load_model, resolve_model

__all__ = ["DEFAULT_MODEL", "LoadedModel", "ModelSpec", "load_model", "resolve_model"]
