"""For the multi-process tests only (tests/test_distributed.py puts this folder on PYTHONPATH): every process,
not only process 0, writes the programs it compiles to the persistent XLA cache.

JAX writes the cache from process 0 alone (many hosts would contend for one shared folder), and the other
processes' programs have other cache keys, so process 1 compiled every one of its programs again in every
run of the tests (~10 s a training step on 2 cores) while process 0 waited for it. On one machine in a test
that contention does not arise. The programs and results are the same either way; only where process 1's
executables come from changes. If JAX's internals move, this does nothing and the tests only run slower.
"""

try:
    from jax._src import compiler as _compiler
    from jax._src import distributed as _distributed

    _cache_write = _compiler._cache_write

    def _write_from_any_process(*args, **kwargs):
        state = _distributed.global_state
        process_id, state.process_id = state.process_id, 0
        try:
            return _cache_write(*args, **kwargs)
        finally:
            state.process_id = process_id

    _compiler._cache_write = _write_from_any_process
except (ImportError, AttributeError):
    pass
