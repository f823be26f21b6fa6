"""Compile every csrc/cuda/*.cu for one GPU arch with ``nvcc -Xptxas -v`` (no GPU needed) and check
each kernel's resources: no register spill, and registers within a budget.

    CUDA_HOME=/usr/local/cuda python tools/ptxas_check.py            # sm_90, every .cu
    python tools/ptxas_check.py --arch sm_80 csrc/cuda/penalty.cu     # one file, another arch

Budget: every kernel in csrc/cuda/ runs blocks of 256 threads (common.cuh: kThreads) and is
memory-bound, so it must reach at least 50% occupancy: 1,024 resident threads of the 2,048 an
SM holds (sm_80 and sm_90), i.e. 4 blocks of 256, i.e. at most 65,536 / 1,024 = 64 registers per
thread (REG_BUDGET).  The kernels say so with __launch_bounds__(kThreads, kMinBlocks = 4), which
makes ptxas keep them within 64 registers or spill; a spill fails the check too.  Shared memory
is reported (and bounds the occupancy in the table) but these kernels use well under 1 KiB.

Device code only (``-cubin``): the host side of the .cu files is compiled by the real build.
Prints a table: kernel, registers, spill bytes (stores / loads), stack frame, shared memory,
occupancy bound.  Exit status 1 on any violation (or a compile error).
"""
from __future__ import annotations

import argparse
import functools
import glob
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REG_BUDGET = 64            # registers per thread: 4 blocks of 256 threads per SM (50% occupancy)
BLOCK_THREADS = 256        # csrc/cuda/common.cuh: kThreads
SM_REGS = 65536            # register file per SM (sm_80 .. sm_90)
SM_THREADS = 2048          # resident threads per SM (sm_80, sm_90; sm_86 has 1536)
SM_SMEM = 228 * 1024       # shared memory per SM (sm_90)
REG_ALLOC_UNIT = 256       # registers are allocated per warp in units of 256



@functools.lru_cache(maxsize=None)
def elem_names() -> dict:
    """Template arguments (fusedgan::Elem)N are shown by name (fusedgan/codes.py, loaded alone)."""
    try:
        import importlib.util

        spec = importlib.util.spec_from_file_location("_fusedgan_codes", os.path.join(ROOT, "fusedgan", "codes.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        return {int(e): e.name for e in mod.Elem}
    except Exception:  # noqa: BLE001 - the names are cosmetic
        return {}


@dataclass
class Kernel:
    name: str               # demangled when c++filt is there, else the mangled name
    arch: str = ""
    regs: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    stack: int = 0
    smem: int = 0
    cmem: dict = field(default_factory=dict)

    @property
    def spills(self) -> int:
        return self.spill_stores + self.spill_loads


_FUNC = re.compile(r"Compiling entry function '([^']+)' for '(\w+)'")
_PROPS = re.compile(r"Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas(text: str) -> list[Kernel]:
    """The kernels of a ``ptxas -v`` log (nvcc -Xptxas -v), in order.

    Per entry function ptxas prints, e.g.::

        ptxas info    : Compiling entry function '_Z6kernelPf' for 'sm_90'
        ptxas info    : Function properties for _Z6kernelPf
            8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
        ptxas info    : Used 40 registers, used 1 barriers, 64 bytes smem, 400 bytes cmem[0]
    """
    kernels: dict[str, Kernel] = {}
    order: list[str] = []
    current: Kernel | None = None
    props_for: str | None = None
    for line in text.splitlines():
        m = _FUNC.search(line)
        if m:
            current = kernels.setdefault(m.group(1), Kernel(m.group(1), m.group(2)))
            if m.group(1) not in order:
                order.append(m.group(1))
            continue
        m = _PROPS.search(line)
        if m:
            props_for = m.group(1)
            continue
        m = _FRAME.search(line)
        if m and props_for is not None:
            k = kernels.get(props_for)
            if k is not None:  # device functions (not entries) have properties too: ignored
                k.stack, k.spill_stores, k.spill_loads = (int(g) for g in m.groups())
            props_for = None
            continue
        m = _USED.search(line)
        if m and current is not None:
            current.regs = int(m.group(1))
            s = _SMEM.search(line)
            current.smem = int(s.group(1)) if s else 0
            current = None
    return [kernels[n] for n in order]


def occupancy_bound(k: Kernel, block: int = BLOCK_THREADS) -> float:
    """Resident threads / SM_THREADS from registers and shared memory (blocks of `block`)."""
    warps = block // 32
    regs_per_warp = -(-max(k.regs, 1) * 32 // REG_ALLOC_UNIT) * REG_ALLOC_UNIT
    by_regs = SM_REGS // (regs_per_warp * warps)
    by_smem = SM_SMEM // k.smem if k.smem else by_regs
    by_threads = SM_THREADS // block
    blocks = min(by_regs, by_smem, by_threads)
    return blocks * block / SM_THREADS


def violations(kernels: list[Kernel], budget: int = REG_BUDGET) -> list[str]:
    out = []
    for k in kernels:
        if k.spills:
            out.append(f"{k.name}: spills ({k.spill_stores} bytes stored, {k.spill_loads} bytes loaded)")
        if k.regs > budget:
            out.append(f"{k.name}: {k.regs} registers > budget {budget} (occupancy {occupancy_bound(k):.0%})")
    return out


def demangle(names: list[str]) -> dict[str, str]:
    try:
        res = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True)
        out = res.stdout.splitlines()
        if len(out) == len(names):
            return dict(zip(names, out))
    except (OSError, subprocess.CalledProcessError):
        pass
    return {n: n for n in names}


def short(name: str, width: int = 110) -> str:
    name = re.sub(r"fusedgan::cuda::\(anonymous namespace\)::", "", name)
    cut = name.rfind(">(")  # the parameter list: the template arguments say enough
    if cut > 0 and name.endswith(")"):
        name = name[: cut + 1]
    names = elem_names() if "(fusedgan::Elem)" in name else {}
    name = re.sub(r"\(fusedgan::Elem\)(\d+)", lambda m: names.get(int(m.group(1)), m.group(0)), name)
    name = name.replace("c10::BFloat16", "bf16").replace("c10::Half", "fp16")
    return name if len(name) <= width else name[: width - 3] + "..."


def table(kernels: list[Kernel]) -> str:
    names = demangle([k.name for k in kernels])
    rows = [("kernel", "regs", "spill st/ld", "stack", "smem", "occupancy")]
    for k in kernels:
        rows.append((short(names[k.name]), str(k.regs), f"{k.spill_stores}/{k.spill_loads}", str(k.stack),
                     str(k.smem), f"{occupancy_bound(k):.0%}"))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) for r in rows)


def nvcc_command(src: str, arch: str, out: str) -> list[str]:
    """The device half of setup.py's nvcc command for one file (torch's flags and ours)."""
    from torch.utils import cpp_extension

    cuda_home = os.environ.get("CUDA_HOME") or "/usr/local/cuda"
    incs = [os.path.join(ROOT, "csrc", "include"), *cpp_extension.include_paths(device_type="cuda")]
    return [os.path.join(cuda_home, "bin", "nvcc"), "-cubin", f"-arch={arch}", "-std=c++20", "-O3",
            *cpp_extension.COMMON_NVCC_FLAGS, "-lineinfo", "-Xptxas", "-v",
            "-DFUSEDGAN_WITH_CUDA=1", "-DTORCH_EXTENSION_NAME=_C", *[f"-I{p}" for p in incs],
            src, "-o", out]


def compile_file(src: str, arch: str) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = nvcc_command(src, arch, os.path.join(tmp, "out.cubin"))
        res = subprocess.run(cmd, capture_output=True, text=True)
    return res.returncode, res.stdout + res.stderr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="the .cu files (default: every csrc/cuda/*.cu)")
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--budget", type=int, default=REG_BUDGET, help="registers per thread (default %(default)s)")
    ap.add_argument("--log", help="parse this saved ptxas log instead of compiling")
    args = ap.parse_args(argv)
    failed = []
    if args.log:
        with open(args.log) as f:
            logs = [(args.log, 0, f.read())]
    else:
        files = args.files or sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))
        if not files:
            print("ptxas_check: no .cu files found", file=sys.stderr)
            return 1
        logs = [(src, *compile_file(src, args.arch)) for src in files]
    for src, rc, log in logs:
        print(f"== {os.path.relpath(src, ROOT)} ({args.arch})")
        if rc:
            print(log)
            failed.append(f"{src}: nvcc failed (exit {rc})")
            continue
        kernels = parse_ptxas(log)
        if not kernels:
            failed.append(f"{src}: no kernels found in the ptxas output")
            continue
        print(table(kernels))
        names = demangle([k.name for k in kernels])
        for k in kernels:
            k.name = short(names[k.name])
        failed += [f"{os.path.basename(src)}: {v}" for v in violations(kernels, args.budget)]
    if failed:
        print("\nptxas_check FAILED:\n  " + "\n  ".join(failed))
        return 1
    print(f"\nptxas_check: every kernel within {args.budget} registers, no spills")
    return 0


if __name__ == "__main__":
    sys.exit(main())
