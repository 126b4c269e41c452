"""Trained models: the Python API (``from bench.api import load_model``), a model's own image
preprocessing, and ``bench eval``'s work (re-evaluating model files). The public names live in
:mod:`bench.api.trained_model` and are re-exported here, so the documented import path stays
``bench.api``."""
from bench.api.trained_model import (LoadedModel, ModelFileError, TensorImages, check_C,
                                     load_model, native_ways_problem, rebuild_method,
                                     solver_function)

__all__ = ["LoadedModel", "ModelFileError", "TensorImages", "check_C", "load_model",
           "native_ways_problem", "rebuild_method", "solver_function"]
