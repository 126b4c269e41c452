"""The files a run leaves behind, one owner per format: result files (with their learning
curves), model files, training checkpoints and their storage errors, ``bench tune``'s files, and
which files a command wrote. Every other area reads and writes these through here; ``store``
imports only :mod:`bench.common`."""
