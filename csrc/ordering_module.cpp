// Python bindings of the ordering engine's native core: tile-count refinement and minimum degree.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <limits>
#include <stdexcept>
#include <string>

#include "bisection.hpp"
#include "min_degree.hpp"
#include "refine.hpp"

namespace py = pybind11;
using Int64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using Int32Array = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

namespace {

void require_1d(const Int64Array& a, const char* name) {
    if (a.ndim() != 1) throw std::invalid_argument(std::string(name) + " must be a 1-D int64 array");
}

py::tuple refine_py(Int64Array in_ptr, Int32Array in_src, Int64Array perm, int64_t block_size,
                    py::object group, uint64_t seed, double time_budget_s, int64_t max_passes,
                    double min_pass_gain, int64_t offset, bool matching) {
    require_1d(in_ptr, "in_ptr");
    require_1d(perm, "perm");
    if (in_src.ndim() != 1) throw std::invalid_argument("in_src must be a 1-D int32 array");
    if (block_size <= 0 || offset < 0) throw std::invalid_argument("block_size must be positive and offset non-negative");
    const int64_t n = perm.shape(0);
    if (n >= std::numeric_limits<int32_t>::max()) throw std::invalid_argument("refine takes fewer than 2^31 - 1 nodes");
    // An inconsistent CSR would read out of bounds: check it (O(E), small next to the search).
    if (in_ptr.shape(0) != n + 1) throw std::invalid_argument("in_ptr must have len(perm) + 1 entries");
    const int64_t* ptr = in_ptr.data();
    if (ptr[0] != 0 || ptr[n] != in_src.shape(0)) throw std::invalid_argument("in_ptr must run from 0 to len(in_src)");
    for (int64_t v = 0; v < n; ++v)
        if (ptr[v + 1] < ptr[v]) throw std::invalid_argument("in_ptr must be non-decreasing");
    const int32_t* src = in_src.data();
    for (int64_t e = 0; e < in_src.shape(0); ++e)
        if (src[e] < 0 || src[e] >= n) throw std::invalid_argument("in_src holds a node id outside [0, len(perm))");
    Int64Array out(n);
    std::copy(perm.data(), perm.data() + n, out.mutable_data());
    Int64Array group_arr;
    const int64_t* group_ptr = nullptr;
    if (!group.is_none()) {
        group_arr = group.cast<Int64Array>();
        require_1d(group_arr, "group");
        if (group_arr.shape(0) != n) throw std::invalid_argument("group must have one entry per node");
        group_ptr = group_arr.data();
    }
    graphattn::RefineResult r;
    {
        py::gil_scoped_release release;
        r = graphattn::refine_blocks(ptr, src, n, out.mutable_data(), block_size,
                                     offset, group_ptr, seed, time_budget_s, max_passes, min_pass_gain, matching);
    }
    return py::make_tuple(out, r.tiles_before, r.tiles_after, r.passes, r.seconds);
}

Int64Array min_degree_py(Int64Array ptr, Int64Array nbrs) {
    require_1d(ptr, "ptr");
    require_1d(nbrs, "nbrs");
    if (ptr.shape(0) < 1) throw std::invalid_argument("ptr must have num_nodes + 1 entries");
    const int64_t n = ptr.shape(0) - 1;
    if (n >= std::numeric_limits<int32_t>::max()) throw std::invalid_argument("min_degree takes fewer than 2^31 - 1 nodes");
    std::vector<int64_t> order;
    {
        py::gil_scoped_release release;
        order = graphattn::min_degree(ptr.data(), nbrs.data(), n);
    }
    Int64Array out(n);
    std::copy(order.begin(), order.end(), out.mutable_data());
    return out;
}

Int64Array multilevel_py(Int64Array ptr, Int64Array nbrs, int64_t block_size, int64_t offset, uint64_t seed) {
    require_1d(ptr, "ptr");
    require_1d(nbrs, "nbrs");
    if (ptr.shape(0) < 1) throw std::invalid_argument("ptr must have num_nodes + 1 entries");
    if (block_size <= 0 || offset < 0) throw std::invalid_argument("block_size must be positive and offset non-negative");
    const int64_t n = ptr.shape(0) - 1;
    if (n >= std::numeric_limits<int32_t>::max()) throw std::invalid_argument("multilevel takes fewer than 2^31 - 1 nodes");
    std::vector<int64_t> order;
    {
        py::gil_scoped_release release;
        order = graphattn::multilevel_order(ptr.data(), nbrs.data(), n, block_size, offset, seed);
    }
    Int64Array out(n);
    std::copy(order.begin(), order.end(), out.mutable_data());
    return out;
}

}  // namespace

PYBIND11_MODULE(_ordering_native, m) {
    m.doc() = "graphattn ordering engine: tile-count refinement, minimum degree, multilevel bisection";
    m.attr("abi_version") = 5;
    m.def("refine_blocks", &refine_py, py::arg("in_ptr"), py::arg("in_src"), py::arg("perm"), py::arg("block_size"),
          py::arg("group") = py::none(), py::arg("seed") = 0,
          py::arg("time_budget_s") = std::numeric_limits<double>::infinity(), py::arg("max_passes") = 100,
          py::arg("min_pass_gain") = 0.0, py::arg("offset") = 0, py::arg("matching") = true,
          "Tile-count local search on perm (node ids in order, int64; position p at global position offset + p). Returns (perm, tiles_before, "
          "tiles_after, passes, seconds). Inputs must be valid (checked by graphattn.order).");
    m.def("min_degree", &min_degree_py, py::arg("ptr"), py::arg("nbrs"),
          "Approximate minimum degree order of a symmetric CSR pattern without self-loops.");
    m.def("multilevel_order", &multilevel_py, py::arg("ptr"), py::arg("nbrs"), py::arg("block_size"),
          py::arg("offset") = 0, py::arg("seed") = 0,
          "Multilevel recursive bisection of a symmetric CSR pattern into aligned blocks of block_size.");
}
