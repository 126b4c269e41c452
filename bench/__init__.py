"""bridgebench: measure whether multi-task learning matches gradient-based meta-learning.

After Wang, Zhao & Li, "Bridging Multi-Task Learning and Meta-Learning: Towards Efficient
Training and Effective Adaptation", ICML 2021.
"""

__version__ = "0.1.0"
