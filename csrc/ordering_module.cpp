// Python bindings of the ordering engine's native core.
#include <pybind11/pybind11.h>

namespace py = pybind11;

PYBIND11_MODULE(_ordering_native, m) {
    m.doc() = "graphattn ordering engine: tile-count refinement and minimum degree";
    m.attr("abi_version") = 1;
}
