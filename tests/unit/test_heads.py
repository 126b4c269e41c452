"""Episode heads (ridge, Crammer-Singer SVM, prototypes) against independent references, and the
R2D2 / MetaOptNet / ProtoNet methods built on them.

References: NumPy's primal ridge solve; cvxpy on the same Crammer-Singer dual; scikit-learn's
``LinearSVC(multi_class="crammer_singer")`` on features augmented to absorb the ``+1.0·I`` term;
a direct NumPy prototype computation; central finite differences for the SVM's gradient.
"""
from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import qpth.qp
import torch
import torch.nn.functional as F
from sklearn.svm import LinearSVC
from torch import nn

import methods.heads as heads
from datasets.episodes import TaskBatch
from methods import METHODS
from methods.backbones import Backbone
from methods.metaoptnet import MetaOptNet
from methods.protonet import ProtoNet
from methods.r2d2 import R2D2


def labels_for(tasks: int, ways: int, per_class: int) -> torch.Tensor:
    return torch.arange(ways).repeat_interleave(per_class).expand(tasks, -1).contiguous()


def gaussian_episodes(tasks: int, ways: int, shots: int, queries: int, dim: int, seed: int,
                      spread: float = 1.0):
    """Support/query features drawn around random class means: ``[T, W*K, D]``, ``[T, W*Q, D]``."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(tasks, ways, 1, dim)) * spread
    support = means + rng.normal(size=(tasks, ways, shots, dim))
    query = means + rng.normal(size=(tasks, ways, queries, dim))
    return (torch.tensor(support.reshape(tasks, ways * shots, dim)),
            labels_for(tasks, ways, shots),
            torch.tensor(query.reshape(tasks, ways * queries, dim)),
            labels_for(tasks, ways, queries))


# --------------------------------------------------------------------------------------------
# Ridge regression (R2D2)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [7, 40])  # fewer and more features than support samples
def test_ridge_weights_match_numpy_primal_solve(dim):
    support, labels, _, _ = gaussian_episodes(3, 5, 3, 1, dim, seed=dim)
    lam = 50.0
    weights = heads.ridge_weights(support, labels, 5, lam)
    assert weights.shape == (3, dim, 5) and weights.dtype == torch.float64
    for t in range(3):
        x, y = support[t].numpy(), np.eye(5)[labels[t].numpy()]
        expected = np.linalg.solve(x.T @ x + lam * np.eye(dim), x.T @ y)
        np.testing.assert_allclose(weights[t].numpy(), expected, rtol=1e-8, atol=1e-12)


def test_one_hot_has_a_column_per_way_and_linear_logits_take_the_querys_dtype():
    """An episode's labels need not reach its last class; weights of another dtype (the
    float64 a solve may return) are cast to the query's."""
    onehot = heads.one_hot(torch.tensor([[0, 1, 1]]), 4, torch.float32)
    assert onehot.shape == (1, 3, 4) and torch.equal(onehot.sum((0, 1)),
                                                     torch.tensor([1.0, 2.0, 0.0, 0.0]))
    query, weights = torch.randn(2, 3, 5), torch.randn(2, 5, 4, dtype=torch.float64)
    logits = heads.linear_logits(query, weights)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, torch.bmm(query, weights.float()))


def test_ridge_lambda_is_applied_in_the_features_dtype():
    """Small features, where the ridge term dominates: lambda = 0.3 in float64, not rounded
    to float32 (4e-8 apart)."""
    support, labels, _, _ = gaussian_episodes(2, 3, 2, 1, 4, seed=11)
    support = support * 1e-3
    weights = heads.ridge_weights(support, labels, 3, 0.3)
    for t in range(2):
        x, y = support[t].numpy(), np.eye(3)[labels[t].numpy()]
        expected = np.linalg.solve(x.T @ x + 0.3 * np.eye(4), x.T @ y)
        np.testing.assert_allclose(weights[t].numpy(), expected, rtol=1e-12)


def test_ridge_logits_gradcheck_wrt_support_and_query():
    torch.manual_seed(0)
    support = torch.randn(2, 6, 4, dtype=torch.float64, requires_grad=True)
    query = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    labels = labels_for(2, 3, 2)

    def head(s, q):
        return heads.linear_logits(q, heads.ridge_weights(s, labels, 3, lam=0.7))

    assert torch.autograd.gradcheck(head, (support, query))


def test_ridge_rejects_bad_lambda_and_shapes():
    support, labels, _, _ = gaussian_episodes(1, 2, 2, 1, 3, seed=0)
    with pytest.raises(ValueError, match="lambda must be positive"):
        heads.ridge_weights(support, labels, 2, 0.0)
    with pytest.raises(ValueError) as refused:
        heads.ridge_weights(support, labels[:, :3], 2, 1.0)
    assert str(refused.value) == ("support labels (1, 3) do not match support features "
                                  "(1, 4, 3): expected (1, 4)")
    with pytest.raises(ValueError, match=r"\[tasks, shots\*ways, dim\]"):
        heads.ridge_weights(support[0], labels, 2, 1.0)


# --------------------------------------------------------------------------------------------
# Crammer-Singer SVM (MetaOptNet)
# --------------------------------------------------------------------------------------------
def test_svm_qp_is_kernel_kronecker_identity_plus_ridge():
    support, labels, _, _ = gaussian_episodes(2, 3, 2, 1, 4, seed=1)
    q, p, g, h, a, b = heads.crammer_singer_qp(support, labels, 3, c_reg=0.1, dual_ridge=1.0)
    onehot = F.one_hot(labels, 3).double().reshape(2, 18)
    for t in range(2):
        gram = support[t] @ support[t].T
        torch.testing.assert_close(q[t], torch.kron(gram + torch.eye(6, dtype=torch.float64),
                                                    torch.eye(3, dtype=torch.float64)))
        torch.linalg.cholesky(q[t])  # positive definite by construction
    torch.testing.assert_close(p, -onehot)
    torch.testing.assert_close(h, 0.1 * onehot)
    torch.testing.assert_close(g, torch.eye(18, dtype=torch.float64))
    assert a.shape == (6, 18) and torch.equal(a.sum(0), torch.ones(18, dtype=torch.float64))
    assert torch.equal(b, torch.zeros(6, dtype=torch.float64))
    assert {x.dtype for x in (q, p, g, h, a, b)} == {torch.float64}  # the features' dtype


def test_the_svm_ridge_is_added_in_the_features_dtype_and_defaults_to_metaoptnets():
    zeros = torch.zeros(1, 2, 4, dtype=torch.float64)  # K = 0: Q is the ridge alone
    labels = labels_for(1, 2, 1)
    q = heads.crammer_singer_qp(zeros, labels, 2, c_reg=0.1, dual_ridge=0.3)[0]
    assert torch.equal(q[0], 0.3 * torch.eye(4, dtype=torch.float64))  # 0.3 in float64
    assert torch.equal(heads.crammer_singer_qp(zeros, labels, 2, c_reg=0.1)[0][0],
                       torch.eye(4, dtype=torch.float64))  # MetaOptNet's +1.0·I


def cvxpy_crammer_singer_dual(x: np.ndarray, y: np.ndarray, ways: int, c_reg: float,
                              dual_ridge: float) -> np.ndarray:
    """The same dual, ``[S, ways]``: min ½Σ_m α_mᵀ(K + rI)α_m − Σ_i α_i^{y_i}."""
    onehot = np.eye(ways)[y]
    chol = np.linalg.cholesky(x @ x.T + dual_ridge * np.eye(len(x)))
    alpha = cp.Variable((len(x), ways))
    objective = 0.5 * cp.sum_squares(chol.T @ alpha) - cp.sum(cp.multiply(onehot, alpha))
    cp.Problem(cp.Minimize(objective),
               [alpha <= c_reg * onehot, cp.sum(alpha, axis=1) == 0]).solve()
    return alpha.value


@pytest.fixture(scope="module")
def svm_episodes():
    """5-way 5-shot, 15 queries, 24 episodes of Gaussian clusters, solved once by qpth."""
    support, labels, query, query_labels = gaussian_episodes(24, 5, 5, 15, 16, seed=3)
    alpha = heads.svm_dual_coefficients(support, labels, 5, c_reg=0.1, max_iter=50)
    logits = heads.linear_logits(query, heads.svm_weights(support, alpha))
    return support, labels, query, query_labels, alpha, logits


def test_svm_solution_is_feasible_and_the_head_is_not_trivial(svm_episodes):
    support, labels, query, query_labels, alpha, logits = svm_episodes
    onehot = F.one_hot(labels, 5).double()
    assert alpha.abs().sum(-1).max() > 1e-3  # some support vectors
    assert alpha.sum(-1).abs().max() < 1e-8  # Σ_m α_i^m = 0
    assert (alpha - 0.1 * onehot).max() < 1e-8  # α ≤ C·onehot
    accuracy = (logits.argmax(-1) == query_labels).double().mean()
    assert 0.6 < accuracy < 1.0  # informative, with a margin of hard queries to agree on


def test_svm_matches_cvxpy_on_the_same_dual(svm_episodes):
    support, labels, query, _, alpha, logits = svm_episodes
    agree = []
    for t in range(support.shape[0]):
        x, q = support[t].numpy(), query[t].numpy()
        ref = cvxpy_crammer_singer_dual(x, labels[t].numpy(), 5, c_reg=0.1, dual_ridge=1.0)
        np.testing.assert_allclose(alpha[t].numpy(), ref, atol=1e-5)
        agree.append((q @ x.T @ ref).argmax(-1) == logits[t].argmax(-1).numpy())
    assert np.mean(agree) >= 0.99


def test_svm_matches_sklearn_crammer_singer_on_augmented_features(svm_episodes):
    """liblinear's Crammer-Singer dual is the same problem with K alone; K + I is the kernel
    of features augmented with a one-hot sample indicator ``[x_i, e_i]``. So LinearSVC with the
    same C, no intercept, on augmented support features gives ``w_m = Σ_i α_i^m [x_i, e_i]``;
    queries are augmented with zeros, so their scores use the first D weights only."""
    support, labels, query, _, alpha, logits = svm_episodes
    weights = heads.svm_weights(support, alpha)
    agree = []
    for t in range(8):
        x = support[t].numpy()
        augmented = np.concatenate([x, np.eye(len(x))], axis=1)
        svc = LinearSVC(C=0.1, multi_class="crammer_singer", fit_intercept=False, tol=1e-8,
                        max_iter=100_000).fit(augmented, labels[t].numpy())
        w = svc.coef_[:, :x.shape[1]].T  # [D, ways]
        np.testing.assert_allclose(w, weights[t].numpy(), atol=1e-5)
        agree.append((query[t].numpy() @ w).argmax(-1) == logits[t].argmax(-1).numpy())
    assert np.mean(agree) >= 0.99


def test_svm_gradient_matches_central_finite_differences():
    support, labels, query, _ = gaussian_episodes(2, 3, 2, 2, 4, seed=5)
    torch.manual_seed(0)
    probe = torch.randn(2, 6, 3, dtype=torch.float64)

    def objective(s, q):
        alpha = heads.svm_dual_coefficients(s, labels, 3, c_reg=0.1, max_iter=60)
        return (heads.linear_logits(q, heads.svm_weights(s, alpha)) * probe).sum()

    s = support.clone().requires_grad_(True)
    q = query.clone().requires_grad_(True)
    grad_s, grad_q = torch.autograd.grad(objective(s, q), (s, q))

    def numeric(tensor, which):
        grad = torch.zeros_like(tensor)
        step = 1e-5
        for idx in np.ndindex(*tensor.shape):
            plus, minus = tensor.clone(), tensor.clone()
            plus[idx] += step
            minus[idx] -= step
            args_p = (plus, query) if which == "s" else (support, plus)
            args_m = (minus, query) if which == "s" else (support, minus)
            grad[idx] = (objective(*args_p) - objective(*args_m)) / (2 * step)
        return grad

    # qpth differentiates the KKT system at its interior-point iterate; a support sample on
    # the boundary of the active set (α ≈ 1e-11 instead of 0) carries an error of ~1e-5 there.
    for analytic, fd in [(grad_s, numeric(support, "s")), (grad_q, numeric(query, "q"))]:
        assert fd.abs().max() > 0.1  # neither path is vacuous
        torch.testing.assert_close(analytic, fd, rtol=1e-3, atol=1e-4 * fd.abs().max().item())


def test_svm_float32_and_double_precision_agree_with_float64(svm_episodes):
    support, labels, _, _, alpha64, _ = svm_episodes
    s32 = support[:4].float()
    single = heads.svm_dual_coefficients(s32, labels[:4], 5, max_iter=15)
    double = heads.svm_dual_coefficients(s32, labels[:4], 5, max_iter=15, double_precision=True)
    assert single.dtype == double.dtype == torch.float32
    assert torch.isfinite(single).all()
    torch.testing.assert_close(double.double(), alpha64[:4], atol=1e-5, rtol=0)
    torch.testing.assert_close(single.double(), alpha64[:4], atol=1e-4, rtol=0)


def test_svm_rejects_bad_parameters():
    support, labels, _, _ = gaussian_episodes(1, 2, 2, 1, 3, seed=0)
    with pytest.raises(ValueError, match="must be positive"):
        heads.svm_dual_coefficients(support, labels, 2, c_reg=0.0)
    with pytest.raises(ValueError, match="must be positive"):
        heads.svm_dual_coefficients(support, labels, 2, dual_ridge=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        heads.svm_dual_coefficients(support, labels, 2, max_iter=0)


class QPSpy:
    """Stands in for ``qpth.qp.QPFunction``: records its options and the QP it is given, and
    solves it with the real one (or raises ``error``)."""

    calls: list = []
    error: Exception | None = None
    real: type | None = None

    def __init__(self, **options):
        self.options, self.solver = options, QPSpy.real(**options)

    def __call__(self, *qp):
        QPSpy.calls.append((self.options, qp))
        if QPSpy.error is not None:
            raise QPSpy.error
        return self.solver(*qp)


@pytest.fixture
def qp_spy(monkeypatch):
    QPSpy.real = qpth.qp.QPFunction
    monkeypatch.setattr(qpth.qp, "QPFunction", QPSpy)
    QPSpy.calls, QPSpy.error = [], None
    yield QPSpy
    QPSpy.calls, QPSpy.error = [], None


def test_svm_solves_its_dual_with_metaoptnets_defaults_in_the_features_dtype(qp_spy):
    support, labels, _, _ = gaussian_episodes(2, 3, 2, 1, 4, seed=5)
    support = support.float()
    alpha = heads.svm_dual_coefficients(support, labels, 3)
    (options, qp), = qp_spy.calls
    # MetaOptNet's training iterations and C, silent, no SPD pre-check (Q is SPD by design)
    assert options == {"verbose": -1, "maxIter": 15, "check_Q_spd": False}
    for got, expected in zip(qp, heads.crammer_singer_qp(support, labels, 3, 0.1, 1.0)):
        assert got.dtype == torch.float32 and torch.equal(got, expected)
    assert alpha.shape == (2, 6, 3) and alpha.dtype == torch.float32
    qp_spy.calls.clear()
    heads.svm_dual_coefficients(support, labels, 3, c_reg=0.3, max_iter=1, dual_ridge=2.5,
                                double_precision=True)  # one iteration is allowed
    (options, qp), = qp_spy.calls
    assert options["maxIter"] == 1
    for got, expected in zip(qp, heads.crammer_singer_qp(support, labels, 3, 0.3, 2.5)):
        assert got.dtype == torch.float64 and torch.equal(got, expected.double())


def test_svm_explains_qpths_lu_failure_on_the_cpu_and_passes_other_errors_on(qp_spy):
    support, labels, _, _ = gaussian_episodes(1, 2, 2, 1, 3, seed=0)
    qp_spy.error = RuntimeError("lu_solve: U(3,3) is zero, singular U.")
    with pytest.raises(RuntimeError, match="Do not call torch.set_num_threads with k > 1"):
        heads.svm_dual_coefficients(support, labels, 2)
    qp_spy.error = RuntimeError("something else")
    with pytest.raises(RuntimeError, match="^something else$"):
        heads.svm_dual_coefficients(support, labels, 2)


def test_the_heads_build_their_tensors_on_the_features_device():
    """On the meta device (shapes only) a tensor created on the CPU instead of the features'
    device fails, as it would on a GPU."""
    support = torch.randn(2, 6, 5, device="meta")
    labels = labels_for(2, 3, 2).to("meta")
    assert heads.ridge_weights(support, labels, 3, 1.0).device.type == "meta"
    assert all(x.device.type == "meta" for x in heads.crammer_singer_qp(support, labels, 3,
                                                                         0.1))


# --------------------------------------------------------------------------------------------
# Prototypes (ProtoNet) and the loss
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("normalize_by_dim, shots", [(True, 3), (False, 3), (True, 1)])
def test_prototype_logits_match_numpy(normalize_by_dim, shots):
    """Class means for several shots and for one (the prototype is the support feature)."""
    support, labels, query, _ = gaussian_episodes(3, 4, shots, 2, 6, seed=7)
    perm = torch.randperm(4 * shots, generator=torch.Generator().manual_seed(0))
    support, labels = support[:, perm], labels[:, perm]  # classes need not be contiguous
    logits = heads.prototype_logits(query, heads.prototypes(support, labels, 4), normalize_by_dim)
    for t in range(3):
        s, y, q = support[t].numpy(), labels[t].numpy(), query[t].numpy()
        protos = np.stack([s[y == m].mean(0) for m in range(4)])
        expected = -((q[:, None, :] - protos[None]) ** 2).sum(-1)
        if normalize_by_dim:
            expected = expected / 6
        np.testing.assert_allclose(logits[t].numpy(), expected, rtol=1e-10, atol=1e-10)


def test_prototype_logits_default_to_metaoptnets_normalised_distance_in_the_querys_dtype():
    support, labels, query, _ = gaussian_episodes(2, 3, 2, 2, 5, seed=3)
    protos = heads.prototypes(support, labels, 3)  # float64
    logits = heads.prototype_logits(query.float(), protos)
    assert logits.dtype == torch.float32  # prototypes of another dtype take the query's
    torch.testing.assert_close(logits, heads.prototype_logits(query.float(), protos.float(),
                                                              normalize_by_dim=True))


def test_smoothed_cross_entropy():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 6, 4, dtype=torch.float64), torch.randint(0, 4, (2, 6))
    torch.testing.assert_close(heads.smoothed_cross_entropy(logits, labels),
                               F.cross_entropy(logits.reshape(-1, 4), labels.reshape(-1)))
    eps = 0.1
    logp = F.log_softmax(logits, -1).numpy().reshape(-1, 4)
    target = np.full((12, 4), eps / 3)
    target[np.arange(12), labels.reshape(-1).numpy()] = 1 - eps
    expected = -(target * logp).sum(-1).mean()
    # float64 logits keep float64 targets: 1 - eps exactly as NumPy has it
    assert heads.smoothed_cross_entropy(logits, labels, eps).item() == pytest.approx(
        expected, rel=1e-13)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        heads.smoothed_cross_entropy(logits, labels, 1.0)


def test_smoothing_spreads_over_every_class_of_the_logits_even_one_no_query_has():
    torch.manual_seed(0)
    logits, labels = torch.randn(1, 6, 4, dtype=torch.float64), torch.tensor([[0, 1, 2] * 2])
    target = np.full((6, 4), 0.2 / 3)
    target[np.arange(6), labels.reshape(-1).numpy()] = 0.8
    expected = -(target * F.log_softmax(logits, -1).numpy().reshape(-1, 4)).sum(-1).mean()
    assert heads.smoothed_cross_entropy(logits, labels, 0.2).item() == pytest.approx(
        expected, rel=1e-13)
    with pytest.raises(ValueError, match="eps"):
        heads.smoothed_cross_entropy(logits, labels, 1.5)


# --------------------------------------------------------------------------------------------
# The methods
# --------------------------------------------------------------------------------------------
class TinyBackbone(Backbone):
    """Flatten + 2-layer MLP; counts its forward calls."""

    def __init__(self, in_dim: int = 16, out_dim: int = 8) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_dim, 32), nn.ReLU(),
                                 nn.Linear(32, out_dim))
        self.calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(images)


class ClusterImages:
    """Toy "images" ``[1, 4, 4]``: one random mean image per class plus Gaussian noise."""

    def __init__(self, n_classes: int = 12, seed: int = 0) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.means = torch.randn(n_classes, 1, 4, 4, generator=self.gen)

    def batch(self, tasks: int, ways: int, shots: int, queries: int) -> TaskBatch:
        classes = torch.stack([torch.randperm(len(self.means), generator=self.gen)[:ways]
                               for _ in range(tasks)])

        def draw(per_class: int) -> torch.Tensor:
            centre = self.means[classes].repeat_interleave(per_class, dim=1)
            return centre + 0.8 * torch.randn(centre.shape, generator=self.gen)

        return TaskBatch(draw(shots), labels_for(tasks, ways, shots), draw(queries),
                         labels_for(tasks, ways, queries), classes)


METHOD_NAMES = ["r2d2", "metaoptnet", "protonet"]


def build(name: str, **hparams) -> nn.Module:
    torch.manual_seed(0)
    return METHODS.get(name)(TinyBackbone(), n_train_classes=12, ways=3, hparams=hparams)


def test_registry_names_and_aliases():
    assert METHODS.get("r2d2") is R2D2
    assert METHODS.get("metaoptnet") is METHODS.get("metaoptnet-svm") is METHODS.get("svm") \
        is MetaOptNet
    assert METHODS.get("protonet") is METHODS.get("proto") is ProtoNet


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_loss_is_finite_one_forward_and_reaches_the_backbone(name):
    method = build(name)
    batch = ClusterImages().batch(tasks=2, ways=3, shots=2, queries=4)
    loss = method.loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert method.backbone.calls == 1  # support and query of all tasks in one forward
    loss.backward()
    for param in method.backbone.parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0
    assert method.scale.grad is not None and method.scale.grad != 0


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_adapt_gives_task_query_way_logits(name):
    method = build(name).eval()
    batch = ClusterImages().batch(tasks=2, ways=3, shots=2, queries=5)
    with torch.no_grad():
        logits = method.adapt(batch.support, batch.support_labels)(batch.query)
    assert logits.shape == (2, 15, 3) and torch.isfinite(logits).all()
    assert not logits.requires_grad


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_training_loss_falls_on_a_toy_problem(name):
    method = build(name)
    data = ClusterImages(seed=1)
    held_out = data.batch(tasks=4, ways=3, shots=2, queries=4)
    optimiser = torch.optim.Adam(method.parameters(), lr=0.03)
    with torch.no_grad():
        before = method.loss(held_out).item()
    for _ in range(20):
        optimiser.zero_grad()
        method.loss(data.batch(tasks=2, ways=3, shots=2, queries=4)).backward()
        optimiser.step()
        method.on_optimizer_step()
    with torch.no_grad():
        after = method.loss(held_out).item()
    assert after < 0.7 * before, (before, after)
    assert method.backbone.schedule_step == 20


def test_metaoptnet_uses_train_iterations_in_loss_and_test_iterations_in_adapt(monkeypatch):
    seen = []
    original = heads.svm_dual_coefficients

    def spy(*args, **kwargs):
        seen.append(kwargs["max_iter"])
        return original(*args, **kwargs)

    monkeypatch.setattr("methods.metaoptnet.svm_dual_coefficients", spy)
    method = build("metaoptnet", train_max_iter=7, test_max_iter=2)
    batch = ClusterImages().batch(tasks=1, ways=3, shots=1, queries=2)
    method.loss(batch)
    with torch.no_grad():
        method.adapt(batch.support, batch.support_labels)
        method.adapt_for_selection(batch.support, batch.support_labels)  # validated as trained
        features = method.task_features(batch.support)
        method.adapt_features(features, batch.support_labels)  # the evaluator's test path
    assert seen == [7, 2, 7, 2]


def test_metaoptnet_label_smoothing_changes_the_loss():
    batch = ClusterImages().batch(tasks=2, ways=3, shots=2, queries=4)
    plain = build("metaoptnet").loss(batch)
    smoothed = build("metaoptnet", label_smoothing=0.2).loss(batch)
    assert not torch.isclose(plain, smoothed)


def expected_logits(name: str, s: torch.Tensor, y: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """What adapt() must return for scale 2.0 (and R2D2's bias 0.5), from the pure heads."""
    if name == "r2d2":
        return 2.0 * heads.linear_logits(q, heads.ridge_weights(s, y, 3, 50.0)) + 0.5
    if name == "metaoptnet":
        alpha = heads.svm_dual_coefficients(s, y, 3, c_reg=0.1, max_iter=3)
        return 2.0 * heads.linear_logits(q, heads.svm_weights(s, alpha))
    return 2.0 * heads.prototype_logits(q, heads.prototypes(s, y, 3), normalize_by_dim=True)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_adapt_is_the_pure_head_with_scale_and_bias(name):
    method = build(name).eval()
    batch = ClusterImages().batch(tasks=2, ways=3, shots=2, queries=3)
    with torch.no_grad():
        method.scale.fill_(2.0)
        if name == "r2d2":
            method.bias.fill_(0.5)
        got = method.adapt(batch.support, batch.support_labels)(batch.query)
        expected = expected_logits(name, method.task_features(batch.support),
                                   batch.support_labels, method.task_features(batch.query))
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name, bad, message", [
    ("r2d2", {"lam": -1.0}, "lam must be a number > 0, got -1.0"),
    ("metaoptnet", {"c_reg": 0.0}, "c_reg must be a number > 0"),
    ("metaoptnet", {"test_max_iter": 0}, "test_max_iter must be an integer >= 1"),
    ("metaoptnet", {"label_smoothing": 1.0}, "label_smoothing must be a number >= 0 and < 1"),
    ("protonet", {"normalise_by_dim": True},
     r"no hyperparameter 'normalise_by_dim' \(did you mean 'normalize_by_dim'\?\)"),
])
def test_bad_hyperparameters_are_rejected(name, bad, message):
    with pytest.raises(ValueError, match=message):
        build(name, **bad)


def test_protonet_fixed_scale_is_a_buffer_not_a_parameter():
    method = build("protonet", learn_scale=False, scale_init=3.0)
    assert "scale" not in dict(method.named_parameters())
    assert method.scale.item() == 3.0



@pytest.mark.parametrize("name", METHOD_NAMES)
def test_heads_run_in_float32_under_bf16_autocast(name):
    """--precision bf16 autocasts the backbone; the head solves stay float32 (qpth has no
    bfloat16 LU, on the CPU or on CUDA)."""
    method = build(name)
    batch = ClusterImages().batch(tasks=2, ways=3, shots=2, queries=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = method.loss(batch)
        with torch.no_grad():
            logits = method.adapt(batch.support, batch.support_labels)(batch.query)
    assert torch.isfinite(loss) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
