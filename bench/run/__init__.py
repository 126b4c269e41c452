"""One run, from its configuration to its result: building the method and its data
(training), the training session (the loop, model selection, early stopping, timing), the test
under both protocols and its episode solvers, and data-parallel training."""
