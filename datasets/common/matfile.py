"""Read arrays from MATLAB .mat files, classic (scipy) or v7.3 (HDF5, via h5py, transposed back)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.errors import DataError


def _regular(path: Path) -> None:
    """A data file must be a regular file: a FIFO or device would block or never end."""
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else
                        f"{path}: not a regular file (a pipe or device?); point the dataset at its .mat files")


def is_hdf5(path: Path) -> bool:
    """True when `path` is an HDF5 file (MATLAB v7.3 .mat files are)."""
    import h5py

    try:
        return bool(h5py.is_hdf5(str(path)))
    except OSError:
        return False


def mat_keys(path: Path) -> list[str]:
    """The variable names stored in a .mat / HDF5 file."""
    path = Path(path)
    _regular(path)
    if is_hdf5(path):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                return sorted(k for k in f.keys() if not k.startswith("#"))
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise DataError(f"{path}: unreadable HDF5 / v7.3 .mat file (truncated or corrupt?): "
                            f"{str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}") from None
    from scipy.io import whosmat

    try:
        return sorted(name for name, _shape, _cls in whosmat(str(path)))
    except Exception as exc:
        raise DataError(f"{path}: not a readable .mat file ({type(exc).__name__}: {exc})") from exc


def read_mat(path: Path, keys: list[str] | tuple[str, ...], *, optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Arrays `keys` (required) and `optional` (if present) from one .mat file.

    MATLAB v7.3 stores arrays column-major, so h5py sees them transposed; they are transposed
    back here so every array has the shape MATLAB shows (rows = items).
    """
    path = Path(path)
    _regular(path)
    want = list(keys) + [k for k in optional if k not in keys]
    out: dict[str, np.ndarray] = {}
    if is_hdf5(path):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                found = sorted(k for k in f.keys() if not k.startswith("#"))
                for key in want:
                    if key in f and isinstance(f[key], h5py.Dataset):
                        dset = f[key]
                        if dset.dtype.kind not in "biuf":  # cell arrays (references), strings, structs
                            raise DataError(f"{path}: key '{key}' holds MATLAB {dset.dtype} data (a cell array, "
                                            "string or struct?); expected a numeric matrix")
                        out[key] = np.asarray(dset[()]).T
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise DataError(f"{path}: unreadable HDF5 / v7.3 .mat file (truncated or corrupt?): "
                            f"{str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}") from None
    else:
        from scipy.io import loadmat

        try:
            raw = loadmat(str(path), variable_names=want)
        except Exception as exc:
            raise DataError(f"{path}: not a readable .mat file ({type(exc).__name__}: {exc})") from exc
        found = mat_keys(path)
        out = {k: np.asarray(raw[k]) for k in want if k in raw}
        for key, arr in out.items():
            if arr.dtype.kind not in "biuf":
                raise DataError(f"{path}: key '{key}' holds {arr.dtype} data (a cell array, string or struct?); "
                                "expected a numeric matrix")
    for key in keys:
        if key not in out:
            raise DataError(f"{path}: no key '{key}' (found: {', '.join(found) or 'none'}); "
                            f"expected '{key}' as documented in docs/datasets.md")
    return out
