"""An example memtune plugin: the task ``wine_mlp`` and the optimizer ``lion``."""
