"""Ranks: one process per card under torchrun (torch.distributed.run).

`world` reads LOCAL_RANK/RANK/WORLD_SIZE, gives each rank its device and CPU thread count,
shards inputs by audio duration, and wraps torch.distributed for coordination only (a start
barrier, summaries gathered at the end): records never travel through it. May import the
layers below (errors, the device layer).
"""
