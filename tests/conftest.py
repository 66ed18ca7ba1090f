"""What the tests share: tiny configs (a 4-channel U-Net on 32-px crops of the bundled mini-set),
synthetic samples, and a persistent XLA cache so identical programs compile once per machine."""

from __future__ import annotations

import fcntl
import gc
import os
import pickle
import tempfile
from collections import Counter
from pathlib import Path

import jax
import numpy as np
import pytest

XLA_CACHE = os.path.join(tempfile.gettempdir(), "dng-jax-test-xla-cache")
jax.config.update("jax_compilation_cache_dir", XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
# The commands the tests start as subprocesses share the cache through the environment.
os.environ["JAX_COMPILATION_CACHE_DIR"] = XLA_CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
#: The tests check what programs compute, not how fast they run: XLA:CPU compiles without its expensive
#: optimisation passes (as scripts/tools/gpu_check.sh --dry-run does). Compiling is most of the suite's time on a
#: cold cache. Set before the first computation, so the CPU backend and every subprocess start with them.
TEST_XLA_FLAGS = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")
_flags = os.environ.get("XLA_FLAGS", "").split()
os.environ["XLA_FLAGS"] = " ".join(_flags + [f for f in TEST_XLA_FLAGS if f not in _flags])

from dng_jax.config import load_config  # noqa: E402
from dng_jax.data.dsb2018 import Sample  # noqa: E402
from dng_jax.experiment.sweep import run_sweep  # noqa: E402
from dng_jax.io.atomic import atomic_write_bytes  # noqa: E402
from dng_jax.models import make_model  # noqa: E402
from dng_jax.segmentation.checkpointing import Checkpointer  # noqa: E402
from dng_jax.segmentation.train_state import create_train_state  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = dict(stage_sizes=(1, 1, 1, 1), width=4, decoder_features=(8, 8, 8, 8, 8))
# orbax's background asyncio threads occasionally race with loop shutdown ("Event loop is closed"); benign.
ORBAX_LOOP_WARNING = pytest.mark.filterwarnings("ignore:Exception ignored in:pytest.PytestUnraisableExceptionWarning")


def xla_flags_with_devices(devices: int) -> str:
    """XLA_FLAGS for a subprocess that sees ``devices`` CPU devices: the tests' flags, any other device count
    dropped."""
    flags = [f for f in os.environ["XLA_FLAGS"].split() if "force_host_platform_device_count" not in f]
    return " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])


def pytest_collection_modifyitems(items):
    """The files with the most ``slow`` tests first. pytest-xdist hands each worker whole files in collection
    order (with --no-loadscope-reorder; by default it sorts them by their number of tests), and a long file
    started last runs on alone at the end. The sort is stable: the order within a file, and of files with
    as many slow tests, stays."""
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop every compiled program after each test module. Each XLA:CPU executable keeps memory mappings of
    its own and none is freed while it stays cached, so one pytest process that holds the programs of the
    whole suite runs into Linux's limit of 65530 mappings per process (vm.max_map_count): a compile or cache
    write then dies with SIGSEGV / SIGABRT in whichever test comes next (docs/benchmarks.md, "The test
    suite", has the counts)."""
    yield
    _drop_compiled_programs()


@pytest.fixture(autouse=True)
def _free_compiled_programs_when_near_the_limit():
    """The same inside a module that compiles a great many programs (Linux only; elsewhere a no-op)."""
    yield
    try:
        with open("/proc/self/maps", "rb") as f:
            mappings = sum(1 for _ in f)
    except OSError:
        return
    if mappings > 20000:
        _drop_compiled_programs()


def _drop_compiled_programs():
    jax.clear_caches()
    gc.collect()


def tiny_config():
    """configs/paper.py with the tiny model, 32-px crops and the bundled mini-set; 2 short epochs."""
    c = load_config(ROOT / "configs" / "paper.py")
    c.data.path, c.data.crop_size = None, 32
    c.model.stage_sizes, c.model.width, c.model.decoder_features = (
        TINY_MODEL["stage_sizes"], TINY_MODEL["width"], TINY_MODEL["decoder_features"])
    c.train.epochs = 2
    c.train.batch_size = 2
    c.train.checkpoint_every = 2
    c.train.log_every = 1
    c.eval.enabled = False
    c.eval.tile_size = 512
    c.eval.workers = 1  # one scoring process: each starts by importing SciPy and scikit-image (~1 s)
    return c


def tiny_sweep_config():
    """The whole sweep at the smallest size that exercises every stage: 1 training epoch, 12 clustering
    crops, kMC / NG at k=2 and GNG from 2 units, 2 seeds in chunks of 1 (resumption inside a
    configuration is exercised)."""
    c = tiny_config()
    c.train.epochs = 1
    c.train.checkpoint_every = 50
    c.train.log_every = 10
    c.cluster_data.n_images = 12
    c.cluster_data.crop_size = 32
    c.cluster_data.batch_size = 6
    c.cluster_data.pca_dim = 4
    c.sweep.methods = ("kmc", "ng", "gng")
    c.sweep.ks = (2,)
    c.sweep.seeds = 2
    c.sweep.seeds_per_chunk = 1
    c.clustering.epochs = 2
    c.clustering.gng.epochs = 2
    c.clustering.gng.max_units = 8
    c.clustering.gng.start_units = 2
    c.retrain.epochs = 1
    c.retrain.batch_size = 4
    c.retrain.crop_size = 16
    c.report.tsne_points = 12
    c.report.panels = 2
    return c


def synthetic_samples(n=5, seed=0):
    """Bright squares on a dark noisy background, 28-44 px high and 40 px wide."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = 28 + 4 * i, 40
        labels = np.zeros((h, w), np.uint16)
        for k in range(1, 4):
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            labels[y : y + 7, x : x + 7] = k
        image = np.where(labels[..., None] > 0, 200, 20).astype(np.uint8) + rng.integers(0, 30, (h, w, 3)).astype(np.uint8)
        out.append(Sample(f"s{i}", image, labels))
    return out


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory, worker_id):
    """``(work dir, result)`` of the tiny sweep, run once for the whole test run (tests copy it to change it).
    With pytest-xdist the first worker that asks runs it while the others wait on a lock, then read its
    result from a pickle beside it (nothing is written into the work dir while other tests copy it)."""
    if worker_id == "master":  # no xdist: this process is the whole run
        workdir = tmp_path_factory.mktemp("sweep")
        return workdir, run_sweep(tiny_sweep_config(), workdir, progress=False)
    shared = tmp_path_factory.getbasetemp().parent  # this run's folder, above every worker's own
    workdir, saved = shared / "finished_sweep", shared / "finished_sweep.pkl"
    with open(shared / "finished_sweep.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not saved.exists():
            result = run_sweep(tiny_sweep_config(), workdir, progress=False)
            atomic_write_bytes(saved, pickle.dumps(result))
    return workdir, pickle.loads(saved.read_bytes())


@pytest.fixture(scope="session")
def tiny_model():
    return make_model(TINY_MODEL)


@pytest.fixture(scope="session")
def tiny_state(tiny_model):
    return create_train_state(jax.random.key(0), tiny_model, None, (1, 32, 32, 3))


@pytest.fixture(scope="session")
def model_and_state(tiny_model, tiny_state):
    return tiny_model, tiny_state


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_state):
    """A training work dir holding the untrained tiny network (step 0, tiny_config()): what --checkpoint loads."""
    d = tmp_path_factory.mktemp("ckpt")
    with Checkpointer(d / "checkpoints") as ck:
        ck.save(0, tiny_state, {"global_step": 0, "config": tiny_config().to_dict()})
        ck.wait()
    return d


def random_image(h, w, seed=0):
    """Uniform noise, an RGB uint8 image of h x w pixels."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.uint8)
