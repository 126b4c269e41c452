"""A small Python API for trained models, for notebooks and other tools::

    from bench.api import load_model
    model = load_model("results/models/mtl_glyphs_5w5s_quick_seed0.pt", device="cpu")
    feats = model.embed(images)          # [N, D]: the unified protocol's features
    preds = model.predict(support, support_labels, query, protocol="unified", C=3.0)

:func:`load_model` reads a model file (:mod:`bench.store.model_files`) and rebuilds its method in eval mode
on ``device``. Images are uint8 (0..255) or float (0..1) ``[N, C, H, W]`` with the model's
channel count and any size; the model's own preprocessing (:mod:`bench.api.preprocess`: resize to
its image size, its training data's normalisation) is applied on the device. ``bench eval``
goes through the same object: the same rebuild, preprocessing, feature extraction
(:func:`bench.run.evaluate.image_features`, batched, no gradients, eval mode) and solvers.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch

from bench.run import solver as solvers
from bench.run.evaluate import SOLVERS, image_features
from bench.store.model_files import ModelFile, ModelFileError, read_model_file
from bench.common.precision import autocast
from bench.api.preprocess import ModelPreprocess
from bench.run.training import build_method_for, prepare_for_device, resolve_device
from core.hparams import HParamError
from core.registry import UnknownNameError
from methods.base import FewShotMethod
from methods.plugins import ALLOW_HINT, MethodImportError, RecordedImportRefused, allow_imports

__all__ = ["LoadedModel", "ModelFileError", "TensorImages", "check_C", "load_model",
           "native_ways_problem", "rebuild_method", "solver_function"]

PROTOCOLS = ("unified", "native")
NATIVE_TASKS_PER_BATCH = 16  # as bench.run.evaluate.evaluate_native


def check_C(C: float) -> float:
    """``C`` (the inverse L2 penalty of the unified head, lambda = 1/C) as a float; a
    ``ValueError`` naming it unless it is a finite number > 0."""
    try:
        value = float(C)
    except (TypeError, ValueError):
        raise ValueError(f"C must be a number > 0 (the inverse L2 penalty, lambda = 1/C), "
                         f"got {C!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"C must be a finite number > 0 (the inverse L2 penalty, lambda = "
                         f"1/C), got {C!r}")
    return value


def native_ways_problem(method: FewShotMethod, trained_ways: int, ways: int) -> str | None:
    """Why the native protocol of ``method``, trained on ``trained_ways``-way episodes, cannot
    classify ``ways``-way episodes (one sentence), or None when it can: only a method that
    declares ``native_ways_fixed`` (its adaptation starts from its trained head) is bound to
    its training way count."""
    cls = type(method)
    if ways == trained_ways or not (method.has_native_adaptation and cls.native_ways_fixed):
        return None
    return (f"the native protocol of {cls.display_name or cls.name} fine-tunes the "
            f"{trained_ways}-way head it was trained with, so it cannot classify {ways}-way "
            f"episodes; use the unified protocol (a head fitted to the episode's classes) or a "
            f"model trained with --ways {ways}.")


def solver_function(name: str) -> Callable[..., torch.Tensor]:
    """The unified protocol's solver ``name`` (as :func:`bench.run.evaluate.evaluate_unified`
    chooses it)."""
    if name == "sklearn":
        return solvers.predict_sklearn
    if name == "batched":
        return solvers.predict_batched
    raise ValueError(f"unknown solver {name!r}; valid: {', '.join(SOLVERS)}")


def rebuild_method(model: ModelFile, device: torch.device) -> FewShotMethod:
    """The model's method with its weights, prepared for ``device`` as its run was, in eval
    mode. :class:`ModelFileError` (naming the file) when its method is not available here
    (not registered, its import path fails) or its weights do not fit. The caller's torch
    random state is left as it was."""
    config = model.config
    try:
        with torch.random.fork_rng(devices=[]):
            method = build_method_for(config, model.channels, model.image_size,
                                      model.n_train_classes)
    except RecordedImportRefused as exc:
        raise ModelFileError(f"{model.path}: its method {config.method!r} comes from the import "
                             f"path {exc.source!r} recorded in the file, which is not imported "
                             f"unless asked; {ALLOW_HINT}") from exc
    except (UnknownNameError, MethodImportError) as exc:
        where = (f" (import path {config.method_source!r})" if config.method_source
                 else "; register it, install its package, or pass its import path when "
                      "training")
        raise ModelFileError(f"{model.path}: its method {config.method!r} is not available "
                             f"here{where}: {exc}") from exc
    except (HParamError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{model.path}: its method {config.method!r} cannot be rebuilt "
                             f"from the recorded configuration ({exc})") from exc
    try:
        method.load_state_dict(model.state_dict, strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ModelFileError(f"{model.path}: its weights do not fit method {config.method!r} "
                             f"as built here ({type(exc).__name__}: {first})") from exc
    method = prepare_for_device(method, config, device)
    return method.eval()


class TensorImages:
    """Images held in a tensor, gathered like :class:`datasets.episodes.EpisodeLoader` gathers
    a split's: ``gather(indices)`` moves the selected images to ``device`` and applies
    ``transform`` there."""

    def __init__(self, images: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor],
                 device: torch.device) -> None:
        self.images, self.transform, self.device = images, transform, torch.device(device)

    def gather(self, indices: torch.Tensor) -> torch.Tensor:
        flat = indices.reshape(-1).to(self.images.device)
        out = self.transform(self.images.index_select(0, flat).to(self.device))
        return out.reshape(*indices.shape, *out.shape[1:])


class LoadedModel:
    """A trained model, ready to embed images and solve episodes (see the module
    docstring). ``method`` is the rebuilt :class:`~methods.base.FewShotMethod`; ``file`` the
    :class:`~bench.store.model_files.ModelFile` (path, sha256, metadata)."""

    def __init__(self, file: ModelFile, method: FewShotMethod, device: torch.device) -> None:
        self.file, self.method, self.device = file, method, torch.device(device)
        self.config = file.config
        facts = file.dataset
        self.preprocess = ModelPreprocess(facts["channels"], facts["image_size"],
                                          facts["mean"], facts["std"])

    @property
    def key(self) -> str:
        return self.file.key

    @property
    def channels(self) -> int:
        return self.file.channels

    @property
    def image_size(self) -> int:
        return self.file.image_size

    @property
    def has_native_adaptation(self) -> bool:
        return self.method.has_native_adaptation

    def __repr__(self) -> str:
        return (f"LoadedModel({self.key!r}, method={self.config.method!r}, "
                f"{self.channels}x{self.image_size}px, device={str(self.device)!r})")

    def embed(self, images: torch.Tensor, *, normalize: bool = True,
              batch_size: int = 256) -> torch.Tensor:
        """Features ``[N, D]`` (float32, on the model's device) of images ``[N, C, H, W]``:
        preprocessed as the model's own, in batches of ``batch_size``, without gradients, in
        eval mode. ``normalize``: L2-normalised, as the unified protocol uses them (False:
        the raw ``method.features``)."""
        self.preprocess.check(images)
        source = TensorImages(images, self.preprocess, self.device)
        feats = image_features(self.method, source, torch.arange(images.shape[0]),  # type: ignore[arg-type]
                               batch_size=batch_size, precision=self.config.precision)
        return solvers.l2_normalize(feats) if normalize else feats

    def predict(self, support: torch.Tensor, support_labels: torch.Tensor,
                query: torch.Tensor, protocol: str = "unified", C: float | None = None,
                solver: str | None = None) -> torch.Tensor:
        """Predicted labels of ``query`` after adapting to ``support``.

        One episode: ``support [S, C, H, W]``, ``support_labels [S]`` (any integers; every
        label is a class), ``query [Q, C, H, W]`` -> ``[Q]``; or ``T`` episodes at once with a
        leading ``T`` on all three -> ``[T, Q]`` (each episode with the same number of classes).
        Predictions are given in the support's own label values (CPU, int64).

        ``protocol``: ``"unified"`` (a fresh logistic-regression head on the L2-normalised
        features; ``C`` its inverse L2 penalty, default the model's run's, 3.0 unless it was
        changed; ``solver`` default the run's) or ``"native"`` (the method's own adaptation;
        for a method without one, the unified protocol).
        """
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not "
                             f"{protocol!r}")
        C = check_C(self.config.logreg_c if C is None else C)
        given = (tuple(support.shape), tuple(support_labels.shape), tuple(query.shape))
        single = support.dim() == 4
        if single:
            support, support_labels, query = support[None], support_labels[None], query[None]
        if support.dim() != 5 or query.dim() != 5 or support_labels.dim() != 2 \
                or support_labels.shape != support.shape[:2] \
                or query.shape[0] != support.shape[0]:
            raise ValueError("expected support [S, C, H, W], support_labels [S] (one label per "
                             "support image) and query [Q, C, H, W], or each with a leading "
                             f"episode dimension T; got support {given[0]}, support_labels "
                             f"{given[1]} and query {given[2]}")
        classes, labels = _episode_classes(support_labels)
        problem = native_ways_problem(self.method, self.config.ways, classes.shape[1]) \
            if protocol == "native" else None
        if problem:
            raise ValueError(problem)
        if protocol == "native" and self.has_native_adaptation:
            predicted = self._predict_native(support, labels, query)
        else:
            t, s, q = support.shape[0], support.shape[1], query.shape[1]
            sup = self.embed(support.flatten(0, 1)).view(t, s, -1)
            qry = self.embed(query.flatten(0, 1)).view(t, q, -1)
            solve = solver_function(solver or self.config.solver)
            predicted = solve(sup, labels.to(sup.device), qry, C=C).cpu()
        out = classes.gather(1, predicted.long())
        return out[0] if single else out

    def _predict_native(self, support: torch.Tensor, labels: torch.Tensor,
                        query: torch.Tensor) -> torch.Tensor:
        """The method's own adaptation, as :func:`bench.run.evaluate.evaluate_native` runs it."""
        self.preprocess.check(support.flatten(0, 1), "support images")
        self.preprocess.check(query.flatten(0, 1), "query images")
        out = []
        for start in range(0, support.shape[0], NATIVE_TASKS_PER_BATCH):
            part = slice(start, start + NATIVE_TASKS_PER_BATCH)
            sup = self._device_images(support[part])
            qry = self._device_images(query[part])
            with torch.no_grad(), autocast(self.device, self.config.precision):
                predictor = self.method.adapt(sup, labels[part].to(self.device))
                out.append(predictor(qry).argmax(-1).cpu())
        return torch.cat(out)

    def _device_images(self, images: torch.Tensor) -> torch.Tensor:
        """``[T, N, C, H, W]`` -> preprocessed ``[T, N, C, S, S]`` on the device."""
        t, n = images.shape[:2]
        flat = self.preprocess(images.flatten(0, 1).to(self.device))
        return flat.view(t, n, *flat.shape[1:])


def _episode_classes(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per episode: its sorted distinct labels ``[T, ways]`` and the labels as indices
    ``0..ways-1`` into them ``[T, S]``."""
    labels = labels.cpu().long()
    rows = [torch.unique(row) for row in labels]
    ways = {len(r) for r in rows}
    if len(ways) != 1:
        raise ValueError(f"every episode needs the same number of classes; got "
                         f"{sorted(ways)}")
    if min(ways) < 2:
        raise ValueError("an episode needs at least two classes in its support labels")
    classes = torch.stack(rows)
    index = torch.stack([torch.searchsorted(c, row) for c, row in zip(classes, labels)])
    return classes, index


def load_model(path: str | Path, device: str | torch.device = "cpu", *,
               allow_import: bool = False) -> LoadedModel:
    """Read the model file ``path`` and rebuild its method on ``device`` ("cpu", "cuda",
    "cuda:1" or "auto"). :class:`ModelFileError` (a ``ValueError`` naming the file) when it is
    not a usable model file: unreadable, corrupt (non-finite weights), or not the bytes its
    run's result recorded (:func:`bench.store.model_files.check_recorded_hash`, when that result is
    beside it). ``allow_import``: import the method's recorded import path (a model of a
    method given by ``package.module:Class``); never done otherwise."""
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    model = read_model_file(path)
    source = model.meta["config"].get("method_source")
    if allow_import and source:
        allow_imports([source])
    return LoadedModel(model, rebuild_method(model, device), device)
