"""The `beast` command line: one group per package, handlers import their stage lazily.

Every `beast` process (dvc stages, the Prefect flows, `make run`) runs NumPy's and OpenBLAS's AVX2 kernels on an
AVX-512 machine: both pick SIMD kernels per CPU when NumPy is imported, their AVX-512 ones round differently in
the last bit, and so the same `dvc repro` trained other model bytes there. Measured on an AMD EPYC with AVX-512:
data/models/cost 7c77e309... (a11ca343... with NumPy's AVX-512 kernels off, as AVX2-only and baseline NumPy
make), data/models/quality e02f26d1... (55872ab9... with OpenBLAS on its Haswell kernels too, as an AVX2
machine makes). Set NPY_DISABLE_CPU_FEATURES or OPENBLAS_CORETYPE yourself to choose otherwise (NumPy ignores
names it does not know; OpenBLAS is told Haswell only on a CPU that has AVX2).
"""

import os


def _has_avx2() -> bool:
    """Whether this is a Linux CPU with AVX2 (its /proc/cpuinfo flags); False where that cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            return next((" avx2" in line for line in info if line.startswith("flags")), False)
    except OSError:
        return False


os.environ.setdefault("NPY_DISABLE_CPU_FEATURES", "X86_V4 AVX512_ICL AVX512_SPR")
if _has_avx2():
    os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")
