"""Low-level helpers with no components: checkpoint I/O, compatibility stand-ins, config
checks, CPU distributed set-up, shared errors and the sample-data generator.

Nothing here imports from the rest of mmbeit (the bottom import layer); import the
submodules explicitly (``from mmbeit.utils.checkpoint_io import ...``).
"""
