"""Ray Tune trainables and the runner that turns a study spec into Tuner runs.

Importing this package starts nothing and sets nothing: the entry points that run studies call
:func:`memtune.tuning.cluster.configure_ray_environment` before they import Ray.
"""
