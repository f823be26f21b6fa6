"""Build fusedgan._C, the native CPU (and later CUDA) kernels.

Package metadata lives in pyproject.toml.  Environment switches:
  FUSEDGAN_BUILD_EXT=0|1|auto  the extension: 0 skips it (pure-Python install: Triton / reference
                              backends), 1 requires it, auto (default) builds it when a compiler and
                              torch are there and falls back to pure Python if the build fails
  FUSEDGAN_BUILD_CUDA=0|1|auto  CUDA kernels (auto: torch has CUDA and nvcc is found; 1: a CUDA
                              build failure is an error)
  CUDA_HOME                   the CUDA toolkit (default /usr/local/cuda); no GPU is needed
  TORCH_CUDA_ARCH_LIST        GPU archs (default: the visible GPUs', else 8.0;8.6;9.0+PTX)
  MAX_JOBS                    parallel compile jobs (ninja)
  FUSEDGAN_SANITIZE=address   AddressSanitizer build of the CPU kernels (-O1, CPU only; load it
                              with LD_PRELOAD=$(c++ -print-file-name=libasan.so): tests/run.sh's
                              asan stage)
Without a working C++ compiler the install still succeeds, without the extension.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = "csrc"
PACKAGES = find_packages(include=["fusedgan", "fusedgan.*"])

# Kernels are compiled once per SIMD level, each with its own -m flags: a file named
# csrc/cpu/*_avx2.cpp or *_avx512.cpp gets that level's flags, and the dispatcher of each kernel
# (e.g. csrc/cpu/loss_terms_cpu.cpp) picks one at run time (as ATen does with CPU_CAPABILITY).
SIMD_LEVELS = {
    "avx2": ("FUSEDGAN_HAVE_AVX2", ["-mavx2", "-mfma", "-mf16c"]),
    "avx512": (
        "FUSEDGAN_HAVE_AVX512",
        ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"],
    ),
}


def _simd_level(path: str):
    stem = os.path.splitext(os.path.basename(path))[0]
    return next((lvl for lvl in SIMD_LEVELS if stem.endswith("_" + lvl)), None)


CPU_FILES = sorted(glob.glob(os.path.join(CSRC, "cpu", "*.cpp")))
SIMD_KERNELS = {p: SIMD_LEVELS[_simd_level(p)] for p in CPU_FILES if _simd_level(p)}
# -Wall stays on; these come from torch's own headers (#pragma unroll, GCC 12's false positive on
# _mm512_undefined_ps, the AVX argument-passing ABI note).
QUIET = ["-Wno-unknown-pragmas", "-Wno-psabi", "-Wno-maybe-uninitialized"]
# -fopenmp: at::parallel_for is inline code that runs its body under `#pragma omp parallel`;
# without the flag the pragma is ignored and every kernel runs on one thread.  Only compiled
# with it, not linked: the GOMP_* symbols resolve to the OpenMP runtime torch already loaded.
OPENMP = [] if sys.platform == "darwin" else ["-fopenmp"]
CXX_FLAGS = ["-O3", "-Wall", *QUIET, *OPENMP]
SANITIZE = os.environ.get("FUSEDGAN_SANITIZE", "").strip()
LINK_FLAGS = []
if SANITIZE:
    if SANITIZE != "address":
        raise RuntimeError(f"FUSEDGAN_SANITIZE: only 'address' is supported, got {SANITIZE!r}")
    CXX_FLAGS = ["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer", *CXX_FLAGS[1:]]
    LINK_FLAGS = ["-fsanitize=address"]


def _env_flag(name: str, default: str) -> str:
    return os.environ.get(name, default).strip().lower()


def _is_x86() -> bool:
    import platform

    return platform.machine().lower() in ("x86_64", "amd64")


def _cuda_home() -> str | None:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    return home if os.path.exists(os.path.join(home, "bin", "nvcc")) else None


def _want_cuda(torch) -> bool:
    mode = _env_flag("FUSEDGAN_BUILD_CUDA", "auto")
    if mode in ("0", "off", "false", "no"):
        return False
    cuda_sources = glob.glob(os.path.join(CSRC, "cuda", "*.cu"))
    have = torch.version.cuda is not None and _cuda_home() is not None
    if mode in ("1", "on", "true", "yes"):
        if not have:
            raise RuntimeError("FUSEDGAN_BUILD_CUDA=1 but torch has no CUDA or nvcc was not found "
                               "(set CUDA_HOME)")
        return bool(cuda_sources)
    return have and bool(cuda_sources)


def _default_cuda_archs(torch) -> str:
    """The visible GPUs' archs, else the common datacenter ones (+PTX for newer GPUs)."""
    if torch.cuda.is_available():
        caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
        return ";".join(f"{major}.{minor}" for major, minor in sorted(caps))
    return "8.0;8.6;9.0+PTX"


def _have_compiler() -> bool:
    cxx = os.environ.get("CXX", "c++").split()[0]
    return shutil.which(cxx) is not None


def make_extensions():
    mode = _env_flag("FUSEDGAN_BUILD_EXT", "auto")
    if mode in ("0", "off", "false", "no"):
        return [], {}
    required = mode in ("1", "on", "true", "yes") or _env_flag("FUSEDGAN_BUILD_CUDA", "auto") in (
        "1", "on", "true", "yes")
    if not _have_compiler():
        if required:
            raise RuntimeError("FUSEDGAN_BUILD_EXT=1 but no C++ compiler was found")
        print("fusedgan: no C++ compiler found; installing without the native extension",
              file=sys.stderr)
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        print("fusedgan: torch is not importable at build time (use --no-build-isolation); "
              "installing without the native extension", file=sys.stderr)
        return [], {}

    # Every csrc/*.cpp and csrc/cpu/*.cpp (SIMD variants separately, below): adding a kernel is
    # adding a file.
    sources = sorted(glob.glob(os.path.join(CSRC, "*.cpp"))) + [p for p in CPU_FILES if not _simd_level(p)]
    define_macros = []
    simd = {}
    if _is_x86() and os.name != "nt":
        simd = dict(SIMD_KERNELS)
        define_macros += sorted({(macro, "1") for macro, _ in simd.values()})
    cxx = [*CXX_FLAGS]
    nvcc = ["-O3", "--expt-relaxed-constexpr", "-lineinfo",
            *[f for flag in CXX_FLAGS[1:] for f in ("-Xcompiler", flag)]]  # -Wall for host code
    ext_cls = cpp_extension.CppExtension
    if _want_cuda(torch) and not SANITIZE:
        # torch fixed its CUDA_HOME when cpp_extension was imported, from a guess that a wrapper
        # nvcc on PATH can mislead: use ours (CUDA_HOME, else /usr/local/cuda).
        cpp_extension.CUDA_HOME = os.environ["CUDA_HOME"] = _cuda_home()
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", _default_cuda_archs(torch))
        # Adding a CUDA kernel = dropping a .cu file in csrc/cuda/.
        sources += sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
        define_macros += [("FUSEDGAN_WITH_CUDA", "1"),
                          ("FUSEDGAN_CUDA_ARCHS", '"%s"' % os.environ["TORCH_CUDA_ARCH_LIST"])]
        ext_cls = cpp_extension.CUDAExtension
    ext = ext_cls(
        name="fusedgan._C",
        sources=sources,
        include_dirs=[os.path.join(ROOT, CSRC, "include")],
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx, "nvcc": nvcc},
        extra_link_args=LINK_FLAGS,
    )
    ext._fusedgan_simd = simd  # compiled separately, each with its own flags (BuildExt below)

    class BuildExt(cpp_extension.BuildExtension):
        """BuildExtension, plus the SIMD kernel files compiled with per-file -m flags."""

        def build_extension(self, ext):
            try:
                simd = getattr(ext, "_fusedgan_simd", {})
                if simd:
                    ext.extra_objects = list(ext.extra_objects or []) + self._compile_simd(ext, simd)
                super().build_extension(ext)
            except Exception as exc:  # noqa: BLE001 - any compiler failure
                if required:
                    raise
                print(f"fusedgan: building {ext.name} failed ({exc}); installing without it "
                      "(set FUSEDGAN_BUILD_EXT=1 to make this an error)", file=sys.stderr)

        def _compile_simd(self, ext, simd):
            cxx = os.environ.get("CXX", "c++").split()
            incs = [os.path.join(ROOT, CSRC, "include"), *cpp_extension.include_paths()]
            abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
            out_dir = os.path.join(self.build_temp, "simd")
            os.makedirs(out_dir, exist_ok=True)

            def compile_one(item):
                src, (_, flags) = item
                obj = os.path.join(out_dir, os.path.basename(src)[:-4] + ".o")
                srcp = os.path.join(ROOT, src)
                deps = [srcp, *glob.glob(os.path.join(ROOT, CSRC, "cpu", "*.h")),
                        *glob.glob(os.path.join(ROOT, CSRC, "include", "fusedgan", "*.h"))]
                if os.path.exists(obj) and os.path.getmtime(obj) >= max(map(os.path.getmtime, deps)):
                    return obj
                cmd = [*cxx, "-std=c++20", "-fPIC", *CXX_FLAGS, *flags,
                       f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
                       *[f"-I{p}" for p in incs], "-c", srcp, "-o", obj]
                print(" ".join(cmd))
                subprocess.check_call(cmd)
                return obj

            jobs = int(os.environ.get("MAX_JOBS", os.cpu_count() or 1))
            with ThreadPoolExecutor(max(1, jobs)) as pool:
                return list(pool.map(compile_one, simd.items()))

    return [ext], {"build_ext": BuildExt.with_options(use_ninja=True)}


def main():
    ext_modules, cmdclass = make_extensions()
    setup(packages=PACKAGES, ext_modules=ext_modules, cmdclass=cmdclass)


if __name__ == "__main__":
    main()
