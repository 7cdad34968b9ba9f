// Approximate minimum degree ordering (see min_degree.cpp).
#pragma once

#include <cstdint>
#include <vector>

namespace graphattn {

// Elimination order of a symmetric pattern given as CSR without self-loops (neighbours of v are
// nbrs[ptr[v]:ptr[v+1]]). Returns perm: the node eliminated at each step.
std::vector<int64_t> min_degree(const int64_t* ptr, const int64_t* nbrs, int64_t num_nodes);

}  // namespace graphattn
