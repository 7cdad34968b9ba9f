"""Native part of the ordering engine (csrc/); everything else is declared in pyproject.toml."""
from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

ext_modules = [
    Pybind11Extension(
        "graphattn._ordering_native",
        sorted(["csrc/ordering_module.cpp", "csrc/refine.cpp", "csrc/min_degree.cpp", "csrc/bisection.cpp"]),
        cxx_std=17,
        extra_compile_args=["-O3"],
    )
]

setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext})
