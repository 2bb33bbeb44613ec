"""The compiled part of the package: ``segcontrast._kernels`` (C++, pybind11).

Everything else about the package is in pyproject.toml; setuptools reads both.
"""

from glob import glob

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension
from setuptools import setup

# one compiler per CPU (NPY_NUM_BUILD_JOBS sets how many)
ParallelCompile("NPY_NUM_BUILD_JOBS").install()

KERNEL_SOURCES = sorted(glob("projects/SegContrast/src/kernels/*.cpp"))

setup(
    ext_modules=[
        Pybind11Extension(
            "segcontrast._kernels",
            KERNEL_SOURCES,
            depends=sorted(glob("projects/SegContrast/src/kernels/*.hpp")),
            cxx_std=17,
            extra_compile_args=["-O3"],
        )
    ]
)
