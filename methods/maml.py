"""MAML: Model-Agnostic Meta-Learning (Finn, Abbeel & Levine, ICML 2017), second or first order.

For each training task the whole network (backbone and linear head) takes ``train_steps``
gradient steps of size ``inner_lr`` on the support loss (Alg. 2, inner update); the outer loss
is the query cross-entropy of the adapted network, averaged over the tasks of the meta-batch,
and its gradient w.r.t. the initial parameters is the meta-gradient. With ``first_order`` the
inner gradients are treated as constants (Sec. 5.2, "first-order approximation"). At test time
the network adapts with ``test_steps`` steps of ``test_inner_lr`` (paper: 5 steps in training,
10 at test, inner lr 0.01, Conv4-32 on mini-ImageNet).

Batch norm, as in the original implementation: every forward of the inner loop and of the query
set normalises with the statistics of its own batch (support or query set of one task), in
training *and* at test time, so the native protocol is transductive over a task's queries.
Running statistics are therefore never used by MAML itself; they matter only for the unified
protocol, which calls :meth:`features` in eval mode with the meta-learned initialisation. They
are kept meaningful this way: in training mode, the first inner step's forward (the initial
parameters on the support set) updates the module's running statistics, exactly as a plain
forward of the initial network would; every other forward (adapted parameters, query set, and
all of test-time adaptation) receives scratch copies of the buffers through
``torch.func.functional_call``, so its updates are discarded. The running statistics thus track
the activations of the meta-learned initialisation, never those of adapted networks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.budget import TrainBudget
from core.search import Range
from datasets import DatasetInfo
from datasets.episodes import TaskBatch
from methods import register_method
from methods.base import Predictor
from methods.inner_loop import (AllLayersNetwork, InnerLoopMethod, Order, Params,
                                gradient_descent, inner_loop_hparams, maml_recipe,
                                per_task_predictor, scratch_buffers)
from methods.taxonomy import Table1Cell


@register_method("maml")
class MAML(AllLayersNetwork, InnerLoopMethod):
    """MAML over all parameters (see the module docstring). Hyperparameters: those of
    :class:`methods.inner_loop.InnerLoopMethod`, with Finn et al.'s mini-ImageNet values as
    defaults (inner lr 0.01, 5 training steps, 10 test steps, second order)."""

    display_name = "MAML"
    table1 = Table1Cell("all layers", "early stopping")
    citation = ("Finn, Abbeel & Levine 2017, Model-Agnostic Meta-Learning for Fast Adaptation of "
                "Deep Networks (ICML)")
    hparam_spec = inner_loop_hparams(inner_lr=0.01, train_steps=5, test_steps=10)
    task_local_batch_norm = True  # every forward normalises with one task's own statistics
    # quick budget: five second-order inner steps over every layer cost about five quick
    # budgets of the other methods on a CPU, so quick MAML takes learn2learn's
    # maml_miniimagenet.py setting instead (one inner step at rate 0.5,
    # docs/references.md#maml-anil).
    quick_hparams = {"inner_lr": 0.5, "train_steps": 1, "test_steps": 1}
    # bench tune: the inner rate and up to 3 second-order steps (each adds a quick budget's
    # worth of CPU time; a method that needs more steps pays for them)
    search_space = {"inner_lr": Range(0.05, 1.0, log=True),
                    "train_steps": Range(1, 3, integer=True)}

    @classmethod
    def paper_budget(cls, dataset: DatasetInfo, shots: int) -> TrainBudget:
        """Finn et al.'s setting (:func:`methods.inner_loop.maml_recipe`): on ImageNet-like
        images 5 inner steps of 0.01 in training and 10 at test, Conv4-32; on small character
        images their Omniglot setting (1 step of 0.4, 3 at test, Conv4-64, meta-batch 32)."""
        return maml_recipe(dataset, shots)


    def adapted_params(self, support: torch.Tensor, labels: torch.Tensor, scratch: Params,
                       lr: float, steps: int, order: Order) -> Params:
        """All parameters after ``steps`` inner steps on one task's support ``[S, C, H, W]``.

        The first step writes the module's running statistics (only in training mode with
        autograd on, i.e. a real training step); every other forward writes into ``scratch``.
        """
        update_running_stats = self.training and order is not Order.NONE

        def support_loss(params: Params, step: int) -> torch.Tensor:
            buffers = {} if (step == 0 and update_running_stats) else scratch
            return F.cross_entropy(self.functional_logits(params, buffers, support), labels)

        return gradient_descent(support_loss, dict(self.named_parameters()), lr, steps, order)

    def loss(self, batch: TaskBatch) -> torch.Tensor:
        """Mean over tasks of the query cross-entropy after ``train_steps`` inner steps."""
        self.check_training_batch(batch)
        order = self.training_order()
        total = batch.support.new_zeros(())
        for t in range(batch.n_tasks):
            scratch = scratch_buffers(self)
            params = self.adapted_params(batch.support[t], batch.support_labels[t], scratch,
                                         self.hparams["inner_lr"], self.hparams["train_steps"],
                                         order)
            logits = self.functional_logits(params, scratch, batch.query[t])
            total = total + F.cross_entropy(logits, batch.query_labels[t])
        return total / batch.n_tasks

    def adapt(self, support: torch.Tensor, support_labels: torch.Tensor) -> Predictor:
        """Per task, ``test_steps`` steps of ``test_inner_lr`` on detached copies of the
        parameters (no second-order graph; the method's parameters and buffers stay as they
        are). The predictor normalises each task's queries with their own batch statistics."""
        adapted = [self.adapted_params(support[t], support_labels[t], scratch_buffers(self),
                                       self.test_lr, self.hparams["test_steps"], Order.NONE)
                   for t in range(support.shape[0])]

        return per_task_predictor(self.functional_logits, self, adapted)
