# tests/test_distributed.py: the tiny classification sample config, each rank dumping its
# weights (tests/data/rank_weights_hook.py, importable with tests/data on PYTHONPATH).
_base_ = '../../configs/beit/benchmarks/beit-tiny-p8_1xb32-20e_sample.py'

custom_imports = dict(imports=['mmbeit', 'rank_weights_hook'], allow_failed_imports=False)
custom_hooks = [dict(type='RankWeightsDumpHook')]
