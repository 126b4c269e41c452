"""Theory check: Figure 1 of Wang, Zhao & Li (ICML 2021) from analytic NTK/NNGP kernels.

Modules:
- ``kernels``: analytic NTK and NNGP of deep ReLU networks (NTK parameterisation, He init);
- ``network``: the matching finite-width network and its empirical kernels (``torch.func``);
- ``validation``: analytic vs empirical kernels by depth and width;
- ``tasks``: the synthetic regression problem of the paper's Sec. 5.1;
- ``predictors``: Lemma 1's F_MTL and F_ANIL, Phi'_ANIL in the eq. (61) form the appendix derives
  (default) or verbatim as printed (and Lemma 2's finite time);
- ``trained``: real MTL and ANIL networks trained by full-batch gradient descent;
- ``sweeps``: the depth and lambda * tau sweeps of Figure 1;
- ``report``: CSV files, summaries and the figure;
- ``cli``: ``add_arguments`` and ``run`` for ``python -m bench theory``.

See docs/theory.md for what the curves show and where the paper's formulas do not produce
its figure.
"""
