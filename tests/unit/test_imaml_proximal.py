"""iMAML and Meta-MinibatchProx: the proximal inner problem and both meta-updates against
independent references (float64).

References: ``torch.linalg.solve`` on the explicit ``I + H/lam`` (Hessian from
``torch.autograd.functional.hessian``); central finite differences of the query loss through an
inner problem solved to machine precision by Newton's method; closed forms on quadratic tasks;
a plain ``torch.optim.SGD`` loop on a copy of the network for the inner solutions.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from datasets.episodes import TaskBatch, episode_labels
from methods import METHODS
from methods.backbones import Backbone
from methods.imaml import IMAML, implicit_meta_gradient
from methods.inner_loop import Params, scratch_buffers
from methods.maml import MAML
from methods.minibatchprox import MinibatchProx, proximal_point_surrogate
from methods.proximal import conjugate_gradient, flatten, proximal_descent, unflatten

WAYS = 3
DTYPE = torch.float64


class TinyConv(Backbone):
    """conv 3x3 -> BatchNorm2d -> tanh -> 2x2 average pool on 1x4x4 images (smooth, so finite
    differences and Newton's method are exact up to rounding); out_dim = 4 * channels."""

    def __init__(self, channels: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.out_dim = 4 * channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(torch.tanh(self.bn(self.conv(x))), 2).flatten(1)


def make_batch(n_tasks: int = 2, shots: int = 2, queries: int = 3, separable: bool = False,
               seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(n_tasks, WAYS, 1, 4, 4, generator=g, dtype=DTYPE)

    def images(per_class: int) -> torch.Tensor:
        x = torch.randn(n_tasks, WAYS * per_class, 1, 4, 4, generator=g, dtype=DTYPE)
        if separable:
            x = 0.3 * x + 2.0 * prototypes.repeat_interleave(per_class, dim=1)
        return x

    return TaskBatch(images(shots), episode_labels(n_tasks, WAYS, shots), images(queries),
                     episode_labels(n_tasks, WAYS, queries),
                     torch.arange(WAYS).expand(n_tasks, -1))


def make_method(cls, seed: int = 0, **hparams):
    torch.manual_seed(seed)
    return cls(TinyConv(), n_train_classes=10, ways=WAYS, hparams=hparams).to(DTYPE)


def explicit_hessian(loss, params: Params) -> torch.Tensor:
    """The dense Hessian of ``loss(params)`` w.r.t. all of ``params`` flattened."""
    flat = flatten({n: p.detach() for n, p in params.items()})
    return torch.autograd.functional.hessian(lambda x: loss(unflatten(x, params)), flat,
                                             vectorize=True)


def newton_solve(objective, start: torch.Tensor, iterations: int = 30) -> torch.Tensor:
    """Newton's method on a smooth, locally strongly convex ``objective(x)`` to machine
    precision (asserted)."""
    x = start.detach().clone()
    for _ in range(iterations):
        xg = x.clone().requires_grad_()
        grad = torch.autograd.grad(objective(xg), xg)[0]
        if grad.norm() < 1e-13:
            return x
        hess = torch.autograd.functional.hessian(objective, x, vectorize=True)
        x = x - torch.linalg.solve(hess, grad)
    xg = x.clone().requires_grad_()
    assert torch.autograd.grad(objective(xg), xg)[0].norm() < 1e-11, "Newton did not converge"
    return x


class NewtonIMAML(IMAML):
    """iMAML whose inner problem is solved to optimality (Newton's method, dense Hessian)."""

    def solve_inner(self, images, labels, scratch, lam, lr, steps, update_running_stats):
        theta = {n: p.detach() for n, p in self.meta_parameters().items()}
        theta_flat = flatten(theta)

        def objective(x: torch.Tensor) -> torch.Tensor:
            loss = self.task_loss(unflatten(x, theta), scratch, images, labels)
            return loss + 0.5 * lam * ((x - theta_flat) ** 2).sum()

        with torch.enable_grad():
            solution = newton_solve(objective, theta_flat)
        return {n: p.clone().requires_grad_() for n, p in unflatten(solution, theta).items()}


# ---------------------------------------------------------------- registration, hyperparameters

def test_registered_under_their_names():
    assert METHODS.get("imaml") is IMAML
    assert METHODS.get("minibatchprox") is MinibatchProx


@pytest.mark.parametrize("cls", [IMAML, MinibatchProx])
@pytest.mark.parametrize("bad", [{"lam": 0.0}, {"lam": True}, {"inner_lr": -1.0},
                                 {"train_steps": 0}, {"test_steps": -1}, {"train_steps": 2.5},
                                 {"test_inner_lr": 0.0}, {"test_lam": -0.5}, {"inner_steps": 3}])
def test_bad_hyperparameters_are_rejected(cls, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        cls(TinyConv(), n_train_classes=10, ways=WAYS, hparams=bad)


def test_imaml_rejects_negative_cg_steps_and_accepts_zero():
    with pytest.raises(ValueError, match="cg_steps"):
        IMAML(TinyConv(), n_train_classes=10, ways=WAYS, hparams={"cg_steps": -1})
    IMAML(TinyConv(), n_train_classes=10, ways=WAYS, hparams={"cg_steps": 0, "test_lam": 0})


# ---------------------------------------------------------------- the shared maths

def test_conjugate_gradient_converges_to_the_dense_solution():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(12, 12, generator=g, dtype=DTYPE)
    a, b = m @ m.T + 0.5 * torch.eye(12, dtype=DTYPE), torch.randn(12, generator=g, dtype=DTYPE)
    calls = []

    def matvec(v):
        calls.append(1)
        return a @ v

    x = conjugate_gradient(matvec, b, steps=100)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-9, atol=1e-12)
    assert len(calls) < 100  # stopped at convergence (exact arithmetic: <= 12 iterations)
    assert not torch.allclose(conjugate_gradient(matvec, b, steps=2), x, rtol=1e-3)


def test_conjugate_gradient_stops_on_non_positive_curvature():
    b = torch.ones(3, dtype=DTYPE)
    assert torch.equal(conjugate_gradient(lambda v: -v, b, steps=5), torch.zeros(3, dtype=DTYPE))


def quadratic(a: torch.Tensor, centre: torch.Tensor, like: Params):
    """``params -> 0.5 (x - centre)^T a (x - centre)`` with ``x`` the flattened params."""
    def loss(params: Params, step: int = 0) -> torch.Tensor:
        d = flatten(params) - centre
        return 0.5 * d @ a @ d
    return loss


def random_psd(n: int, g: torch.Generator, shift: float = 0.0) -> torch.Tensor:
    m = torch.randn(n, n, generator=g, dtype=DTYPE)
    return m @ m.T / n + shift * torch.eye(n, dtype=DTYPE)


def quadratic_theta(g: torch.Generator) -> Params:
    """A 6-dimensional parameter in two tensors (so flatten/unflatten are exercised)."""
    return {"w": torch.randn(2, 2, generator=g, dtype=DTYPE),
            "b": torch.randn(2, generator=g, dtype=DTYPE)}


def test_proximal_descent_reaches_the_closed_form_and_leaves_the_anchor_alone():
    g = torch.Generator().manual_seed(1)
    theta = quadratic_theta(g)
    before = {n: t.clone() for n, t in theta.items()}
    a, centre, lam = random_psd(6, g), torch.randn(6, generator=g, dtype=DTYPE), 0.7
    lr = 1.0 / (torch.linalg.eigvalsh(a).max().item() + lam)
    phi = proximal_descent(quadratic(a, centre, theta), theta, lam, lr, steps=400)
    eye = torch.eye(6, dtype=DTYPE)
    expected = torch.linalg.solve(a + lam * eye, a @ centre + lam * flatten(theta))
    torch.testing.assert_close(flatten(phi), expected, rtol=1e-10, atol=1e-12)
    assert all(p.is_leaf and p.requires_grad for p in phi.values())
    assert all(torch.equal(theta[n], before[n]) for n in theta)


# ---------------------------------------------------------------- iMAML checks

def test_imaml_meta_gradient_on_a_quadratic_task_equals_the_closed_form():
    """(c) L_s = 0.5 (x-a)^T A (x-a), L_q = 0.5 (x-b)^T B (x-b): phi* = (A + lam I)^-1
    (A a + lam theta) and the meta-gradient is lam (A + lam I)^-1 B (phi* - b)."""
    g = torch.Generator().manual_seed(2)
    theta = quadratic_theta(g)
    a, b_mat = random_psd(6, g), random_psd(6, g, shift=0.5)
    a_centre, b_centre = torch.randn(6, generator=g, dtype=DTYPE), torch.randn(6, generator=g,
                                                                               dtype=DTYPE)
    lam, eye = 1.5, torch.eye(6, dtype=DTYPE)
    support, query = quadratic(a, a_centre, theta), quadratic(b_mat, b_centre, theta)
    lr = 1.0 / (torch.linalg.eigvalsh(a).max().item() + lam)
    phi = proximal_descent(support, theta, lam, lr, steps=400)
    value, grads = implicit_meta_gradient(support, query, phi, lam, cg_steps=20)
    phi_star = torch.linalg.solve(a + lam * eye, a @ a_centre + lam * flatten(theta))
    expected = lam * torch.linalg.solve(a + lam * eye, b_mat @ (phi_star - b_centre))
    torch.testing.assert_close(flatten(grads), expected, rtol=1e-9, atol=1e-12)
    d = phi_star - b_centre
    assert value.item() == pytest.approx((0.5 * d @ b_mat @ d).item(), rel=1e-10)
    assert set(grads) == {"w", "b"} and grads["w"].shape == (2, 2)


def test_imaml_conjugate_gradient_equals_the_dense_solve_on_a_network():
    """(a) On the tiny network, CG run to convergence solves (I + H/lam) x = grad L_query to
    1e-6 relative, H the explicit Hessian of the support loss at the inner solution."""
    method = make_method(IMAML, lam=4.0).train()
    batch = make_batch()
    scratch = scratch_buffers(method)
    lam = method.hparams["lam"]
    phi = method.solve_inner(batch.support[0], batch.support_labels[0], scratch, lam, 0.1, 5,
                             update_running_stats=False)

    def support(params):
        return method.task_loss(params, scratch, batch.support[0], batch.support_labels[0])

    def query(params):
        return method.task_loss(params, scratch, batch.query[0], batch.query_labels[0])

    hessian = explicit_hessian(support, phi)
    system = torch.eye(len(hessian), dtype=DTYPE) + hessian / lam
    assert torch.linalg.eigvalsh(system).min() > 0  # CG's precondition holds here
    g = flatten(list(torch.autograd.grad(query(phi), list(phi.values()))))
    dense = torch.linalg.solve(system, g)
    _, grads = implicit_meta_gradient(support, query, phi, lam, cg_steps=10 * len(g))
    error = (flatten(grads) - dense).norm() / dense.norm()
    assert error < 1e-6, error
    _, few = implicit_meta_gradient(support, query, phi, lam, cg_steps=2)
    assert (flatten(few) - dense).norm() / dense.norm() > 1e-6  # the number of steps matters
    _, first_order = implicit_meta_gradient(support, query, phi, lam, cg_steps=0)
    torch.testing.assert_close(flatten(first_order), g, rtol=0, atol=0)


def test_imaml_meta_gradient_matches_finite_differences_through_the_argmin():
    """(b) With the inner problem solved to optimality, the gradient of IMAML.loss equals central
    finite differences of mean_t L_query(phi*_t(theta)) along random directions."""
    method = make_method(NewtonIMAML, lam=4.0, cg_steps=500).train()
    batch = make_batch()
    params = list(method.meta_parameters().values())
    loss = method.loss(batch)
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        assert loss.item() == pytest.approx(method.loss(batch).item(), rel=1e-12)
    g = torch.Generator().manual_seed(3)
    eps = 1e-5
    for _ in range(3):
        direction = [torch.randn(p.shape, generator=g, dtype=DTYPE) for p in params]
        values = []
        with torch.no_grad():
            for sign in (1.0, -1.0):
                for p, d in zip(params, direction):
                    p.add_(sign * eps * d)
                values.append(method.loss(batch).item())
                for p, d in zip(params, direction):
                    p.sub_(sign * eps * d)
        numeric = (values[0] - values[1]) / (2 * eps)
        analytic = sum((gr * d).sum() for gr, d in zip(grads, direction)).item()
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-10)


def test_imaml_loss_under_no_grad_equals_training_loss():
    method = make_method(IMAML, train_steps=3).eval()
    batch = make_batch()
    with torch.no_grad():
        quiet = method.loss(batch)
    assert not quiet.requires_grad
    torch.testing.assert_close(quiet, method.loss(batch).detach(), rtol=1e-12, atol=0)


def test_imaml_rejects_a_batch_without_queries():
    with pytest.raises(ValueError, match="queries >= 1"):
        make_method(IMAML).loss(make_batch(queries=0))


# ---------------------------------------------------------------- Meta-MinibatchProx checks

def test_minibatchprox_sgd_step_on_quadratic_tasks_equals_the_closed_form():
    """On quadratic tasks L_t = 0.5 (x - a_t)^T A_t (x - a_t), backward of the surrogate and
    one SGD step of rate eta give theta - eta lam (theta - mean_t phi*_t), phi*_t =
    (A_t + lam I)^-1 (A_t a_t + lam theta); with eta = 1/lam, theta becomes mean_t phi*_t."""
    g = torch.Generator().manual_seed(4)
    start = quadratic_theta(g)
    lam, eye = 0.8, torch.eye(6, dtype=DTYPE)
    tasks = [(random_psd(6, g), torch.randn(6, generator=g, dtype=DTYPE)) for _ in range(3)]
    stars = [torch.linalg.solve(a + lam * eye, a @ c + lam * flatten(start)) for a, c in tasks]
    mean_star = torch.stack(stars).mean(0)
    solutions, losses = [], []
    for a, c in tasks:
        loss = quadratic(a, c, start)
        lr = 1.0 / (torch.linalg.eigvalsh(a).max().item() + lam)
        phi = proximal_descent(loss, start, lam, lr, steps=400)
        solutions.append(phi)
        losses.append(loss(phi).detach())
    for eta in (0.3, 1.0 / lam):
        theta = {n: nn.Parameter(t.clone()) for n, t in start.items()}
        optimizer = torch.optim.SGD(theta.values(), lr=eta)
        surrogate = proximal_point_surrogate(theta, solutions, lam, torch.stack(losses))
        surrogate.backward()
        optimizer.step()
        expected = flatten(start) - eta * lam * (flatten(start) - mean_star)
        torch.testing.assert_close(flatten({n: p.detach() for n, p in theta.items()}),
                                   expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(expected, mean_star, rtol=1e-12, atol=1e-12)


def reference_inner_solution(method: MinibatchProx, images: torch.Tensor,
                             labels: torch.Tensor) -> tuple[list[torch.Tensor], float]:
    """The inner problem solved by torch.optim.SGD on a copy of the network in training mode
    (batch statistics); returns the solution and the objective's data term there."""
    h = method.hparams
    net = copy.deepcopy(method).train()
    theta = [p.detach().clone() for p in method.parameters()]
    optimizer = torch.optim.SGD(net.parameters(), lr=h["inner_lr"])
    for _ in range(h["train_steps"]):
        optimizer.zero_grad()
        prox = sum(((p - t) ** 2).sum() for p, t in zip(net.parameters(), theta))
        (F.cross_entropy(net(images), labels) + 0.5 * h["lam"] * prox).backward()
        optimizer.step()
    with torch.no_grad():
        data = F.cross_entropy(net(images), labels).item()
    return [p.detach() for p in net.parameters()], data


def test_minibatchprox_gradient_pulls_theta_toward_the_mean_inner_solution():
    """The gradient of MinibatchProx.loss is lam (theta - mean_t phi_t), phi_t solved by plain
    SGD on each task's support and query images; its value is the minibatch objective."""
    method = make_method(MinibatchProx, lam=0.5, inner_lr=0.3, train_steps=4).train()
    batch = make_batch()
    images = torch.cat([batch.support, batch.query], 1)
    labels = torch.cat([batch.support_labels, batch.query_labels], 1)
    refs = [reference_inner_solution(method, images[t], labels[t]) for t in range(2)]
    params = list(method.parameters())
    loss = method.loss(batch)
    grads = torch.autograd.grad(loss, params)
    lam = method.hparams["lam"]
    for i, (p, grad) in enumerate(zip(params, grads)):
        mean_phi = (refs[0][0][i] + refs[1][0][i]) / 2
        torch.testing.assert_close(grad, lam * (p.detach() - mean_phi), rtol=1e-9, atol=1e-12)
    expected = sum(data + 0.5 * lam * sum(((p.detach() - q) ** 2).sum().item()
                                          for p, q in zip(params, phi))
                   for phi, data in refs) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    assert any(g.abs().max() > 1e-6 for g in grads)


def test_minibatchprox_needs_no_queries():
    method = make_method(MinibatchProx, train_steps=2).train()
    assert torch.isfinite(method.loss(make_batch(queries=0)))


# ---------------------------------------------------------------- both: batch norm, adaptation

@pytest.mark.parametrize("cls", [IMAML, MinibatchProx])
def test_running_stats_come_only_from_the_initial_parameters(cls):
    """After a training loss, the BN buffers equal those of plain forwards of the initial
    network on each task's inner-loop images (support; MinibatchProx: support and query)."""
    method = make_method(cls, train_steps=3).train()
    reference = copy.deepcopy(method)
    batch = make_batch()
    method.loss(batch).backward()
    inner = batch.support if cls is IMAML else torch.cat([batch.support, batch.query], 1)
    with torch.no_grad():
        for t in range(batch.n_tasks):
            reference.backbone(inner[t])
    expected = dict(reference.named_buffers())
    for name, buffer in method.named_buffers():
        torch.testing.assert_close(buffer, expected[name], rtol=0, atol=1e-12)


def support_accuracy(predictor, batch: TaskBatch) -> float:
    return (predictor(batch.support).argmax(-1) == batch.support_labels).double().mean().item()


@pytest.mark.parametrize("cls", [IMAML, MinibatchProx])
def test_adapt_fits_the_support_set_and_leaves_the_method_unchanged(cls):
    method = make_method(cls, lam=0.1, test_inner_lr=0.5, test_steps=15)
    with torch.no_grad():  # zero head: before adaptation every prediction is class 0 (chance)
        method.head.weight.zero_()
        method.head.bias.zero_()
    method.eval()
    batch = make_batch(n_tasks=3, shots=4, separable=True)
    state = copy.deepcopy(method.state_dict())
    unadapted = copy.deepcopy(method)
    unadapted.hparams["test_steps"] = 0
    with torch.no_grad():
        predictor = method.adapt(batch.support, batch.support_labels)
        logits = predictor(batch.query)
        after = support_accuracy(predictor, batch)
        before = support_accuracy(unadapted.adapt(batch.support, batch.support_labels), batch)
        with pytest.raises(ValueError, match="adapted to 3 tasks"):
            predictor(batch.query[:1])
    assert logits.shape == (3, WAYS * 3, WAYS) and not logits.requires_grad
    assert before == pytest.approx(1 / WAYS) and after >= 0.9
    for name, value in method.state_dict().items():
        same = torch.equal(value, state[name]) if torch.is_tensor(value) else value == state[name]
        assert same, f"adapt() changed {name}"
    assert all(p.grad is None for p in method.parameters())


def test_test_lam_zero_is_plain_fine_tuning_like_maml():
    """test_lam = 0 adapts exactly as MAML's test-time gradient descent does (the same
    parameters, steps and rate); the default (test_lam = lam > 0) does not."""
    batch = make_batch(n_tasks=2, separable=True)
    maml = make_method(MAML, test_inner_lr=0.5, test_steps=4).eval()
    logits = {}
    for test_lam in (0.0, None):
        method = make_method(IMAML, lam=2.0, test_lam=test_lam, test_inner_lr=0.5,
                             test_steps=4).eval()
        method.load_state_dict(maml.state_dict())
        with torch.no_grad():
            logits[test_lam] = method.adapt(batch.support, batch.support_labels)(batch.query)
    with torch.no_grad():
        expected = maml.adapt(batch.support, batch.support_labels)(batch.query)
    torch.testing.assert_close(logits[0.0], expected, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(logits[None], expected, atol=1e-4)


@pytest.mark.parametrize("cls,hparams", [
    (IMAML, {"lam": 1.0, "inner_lr": 0.3, "train_steps": 5}),
    (MinibatchProx, {"lam": 0.5, "inner_lr": 0.3, "train_steps": 5}),
], ids=["imaml", "minibatchprox"])
def test_training_loss_falls(cls, hparams):
    method = make_method(cls, **hparams).train()
    batch = make_batch(separable=True, seed=3)
    optimizer = torch.optim.Adam(method.parameters(), lr=0.02)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = method.loss(batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
