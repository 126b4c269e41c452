"""Many runs into one results folder: validating a sweep before it starts, atomic claims so
several processes can share a folder, runs in processes of their own (``--isolate``,
``--jobs N``) and on Slurm (``--slurm``)."""
