// Multilevel recursive bisection into blocks of exactly block_size nodes (see bisection.cpp).
#pragma once

#include <cstdint>
#include <vector>

namespace graphattn {

// Node ids in the new order (x_new = x[perm]) of a symmetric CSR pattern without self-loops
// (ptr [num_nodes + 1], nbrs). Cuts fall on multiples of block_size in global positions
// offset + p, so every block but a batch's boundary ones holds exactly block_size nodes.
std::vector<int64_t> multilevel_order(const int64_t* ptr, const int64_t* nbrs, int64_t num_nodes, int64_t block_size,
                                      int64_t offset, uint64_t seed);

}  // namespace graphattn
