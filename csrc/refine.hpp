// Tile-count refinement of a node order (see refine.cpp).
#pragma once

#include <cstdint>

namespace graphattn {

struct RefineResult {
    int64_t tiles_before = 0, tiles_after = 0, passes = 0;
    double seconds = 0.0;
};

// Improves `perm` (x_new = x[perm], int64 [num_nodes]) in place. The graph is the CSR of each
// node's in-edges: sources in_src[in_ptr[v]:in_ptr[v + 1]] (duplicates and self-loops count).
// Position p sits at global position offset + p, so blocks follow the global grid of a graph
// inside a batch. `group` (may be
// null) forbids exchanges between nodes of different graphs of a batch, so each graph keeps its range.
// `matching` false leaves out the wish-matching sweep of each pass (see refine.cpp).
RefineResult refine_blocks(const int64_t* in_ptr, const int32_t* in_src, int64_t num_nodes,
                           int64_t* perm, int64_t block_size, int64_t offset, const int64_t* group, uint64_t seed,
                           double time_budget_s, int64_t max_passes, double min_pass_gain, bool matching);

}  // namespace graphattn
