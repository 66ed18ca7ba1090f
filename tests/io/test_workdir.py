"""The work dir (dng_jax/io/workdir.py): what a killed run leaves half written is removed, nothing else."""

from __future__ import annotations

from dng_jax.io.workdir import remove_stale_temp_files


def test_stale_temp_files_of_a_killed_run_are_removed(tmp_path):
    (tmp_path / "runs" / "kmc_k5").mkdir(parents=True)
    stale = [tmp_path / ".images.npy.abc123.tmp", tmp_path / "runs" / "kmc_k5" / ".chunk_0000.json.x.tmp"]
    for p in stale:
        p.write_bytes(b"half written")
    keep = tmp_path / "runs" / "kmc_k5" / "results.json"
    keep.write_text("[]")
    assert sorted(remove_stale_temp_files(tmp_path)) == sorted(stale)
    assert not any(p.exists() for p in stale) and keep.exists()
