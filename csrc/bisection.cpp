// Multilevel recursive bisection into blocks of exactly B nodes (the `multilevel` ordering).
//
// Each segment [lo, hi) of the order is split at the block boundary nearest its middle (on the
// global block grid, like kd and partition), and the split is a minimum-cut bisection of the
// segment's induced subgraph with that exact left size, found the way METIS finds one:
// - coarsen by heavy-edge matching until the graph is small (vertex and edge weights add up);
// - bisect the coarsest graph by greedy graph growing from a few seeds, keeping the smallest cut;
// - project back level by level, improving each level with Fiduccia–Mattheyses passes (boundary
//   moves by gain, best balanced prefix kept), the last one with exact balance.
// Cut-minimising parts are compact, which is what k-NN graphs of thin CAD parts and volumes need
// (measured: fewer tiles than kd and the breadth-first partition there); on mesh-edge graphs RCM's
// bands stay better, and auto keeps whichever counts fewer tiles.
#include "bisection.hpp"

#include <algorithm>
#include <cstdint>
#include <exception>
#include <numeric>
#include <queue>
#include <random>
#include <thread>
#include <utility>
#include <vector>

namespace graphattn {
namespace {

struct Graph {
    std::vector<int64_t> ptr{0};
    std::vector<int32_t> adj, edge_weight, node_weight;
    int64_t size() const { return static_cast<int64_t>(node_weight.size()); }
    int64_t total_weight() const { return std::accumulate(node_weight.begin(), node_weight.end(), int64_t{0}); }
};

// Heavy-edge matching, contracted. `coarse_of` maps each node to its coarse node.
Graph coarsen(const Graph& g, std::vector<int32_t>& coarse_of, std::mt19937_64& rng, int64_t max_node_weight) {
    const int64_t n = g.size();
    std::vector<int32_t> visit(n), mate(n, -1);
    std::iota(visit.begin(), visit.end(), 0);
    std::shuffle(visit.begin(), visit.end(), rng);
    for (int32_t u : visit) {
        if (mate[u] != -1) continue;
        int32_t best = -1, best_weight = -1;
        for (int64_t e = g.ptr[u]; e < g.ptr[u + 1]; ++e) {
            const int32_t v = g.adj[e];
            if (mate[v] == -1 && v != u && g.edge_weight[e] > best_weight &&
                g.node_weight[u] + g.node_weight[v] <= max_node_weight) {
                best = v;
                best_weight = g.edge_weight[e];
            }
        }
        mate[u] = best >= 0 ? best : u;
        if (best >= 0) mate[best] = u;
    }
    coarse_of.assign(n, -1);
    int32_t nc = 0;
    std::vector<int32_t> members;  // pairs (u, mate) in coarse order
    members.reserve(2 * n);
    for (int32_t u = 0; u < n; ++u) {
        if (coarse_of[u] != -1) continue;
        coarse_of[u] = coarse_of[mate[u]] = nc++;
        members.push_back(u);
        members.push_back(mate[u]);
    }
    Graph c;
    c.node_weight.resize(nc);
    c.ptr.assign(nc + 1, 0);
    std::vector<int32_t> slot(nc, -1);  // where coarse neighbour x sits in the row being built
    for (int32_t x = 0; x < nc; ++x) {
        const int32_t a = members[2 * x], b = members[2 * x + 1];
        c.node_weight[x] = g.node_weight[a] + (a != b ? g.node_weight[b] : 0);
        const int64_t row = static_cast<int64_t>(c.adj.size());
        for (int32_t u : {a, b}) {
            if (u == b && a == b) break;
            for (int64_t e = g.ptr[u]; e < g.ptr[u + 1]; ++e) {
                const int32_t y = coarse_of[g.adj[e]];
                if (y == x) continue;  // the contracted edge disappears
                if (slot[y] < 0) {
                    slot[y] = static_cast<int32_t>(c.adj.size() - row);
                    c.adj.push_back(y);
                    c.edge_weight.push_back(g.edge_weight[e]);
                } else {
                    c.edge_weight[row + slot[y]] += g.edge_weight[e];
                }
            }
        }
        for (int64_t e = row; e < static_cast<int64_t>(c.adj.size()); ++e) slot[c.adj[e]] = -1;
        c.ptr[x + 1] = static_cast<int64_t>(c.adj.size());
    }
    return c;
}

int64_t cut_of(const Graph& g, const std::vector<uint8_t>& side) {
    int64_t cut = 0;
    for (int64_t u = 0; u < g.size(); ++u)
        for (int64_t e = g.ptr[u]; e < g.ptr[u + 1]; ++e) cut += side[u] != side[g.adj[e]] ? g.edge_weight[e] : 0;
    return cut / 2;
}

// Fiduccia–Mattheyses on a bisection. Side 0's weight should end within `accept` of `target`;
// moves may wander up to `wander` away meanwhile. Each pass keeps the best prefix of its moves
// (balanced first, then smallest cut). Returns the final cut.
int64_t refine(const Graph& g, std::vector<uint8_t>& side, int64_t target, int64_t accept, int64_t wander,
               int passes) {
    const int64_t n = g.size();
    std::vector<int64_t> gain(n, 0);
    std::vector<uint8_t> locked(n);
    int64_t left = 0;
    for (int64_t u = 0; u < n; ++u) left += side[u] == 0 ? g.node_weight[u] : 0;
    int64_t cut = cut_of(g, side);
    const int64_t stall_limit = std::max<int64_t>(64, n / 50);
    for (int pass = 0; pass < passes; ++pass) {
        using Entry = std::pair<int64_t, int32_t>;
        std::priority_queue<Entry> heap[2];
        for (int64_t u = 0; u < n; ++u) {
            int64_t external = 0, internal = 0;
            for (int64_t e = g.ptr[u]; e < g.ptr[u + 1]; ++e)
                (side[g.adj[e]] != side[u] ? external : internal) += g.edge_weight[e];
            gain[u] = external - internal;
            locked[u] = 0;
            if (external > 0) heap[side[u]].push({gain[u], static_cast<int32_t>(u)});
        }
        auto imbalance = [&](int64_t l) { return std::max<int64_t>(0, std::llabs(l - target) - accept); };
        std::vector<int32_t> moved;
        int64_t best_cut = cut, best_imbalance = imbalance(left);
        size_t best_moves = 0;
        const int64_t start_cut = cut, start_imbalance = best_imbalance;
        while (true) {
            // The side to move from: forced while outside the accepted window, else the best gain
            // whose move stays within the wander window.
            int from = -1;
            for (int s = 0; s < 2; ++s) {
                while (!heap[s].empty()) {
                    const auto [gv, u] = heap[s].top();
                    if (locked[u] || side[u] != s || gv != gain[u]) { heap[s].pop(); continue; }
                    break;
                }
            }
            const bool too_heavy = left > target + accept, too_light = left < target - accept;
            for (int s = 0; s < 2; ++s) {
                if (heap[s].empty()) continue;
                if ((too_heavy && s == 1) || (too_light && s == 0)) continue;
                const int32_t u = heap[s].top().second;
                const int64_t after = s == 0 ? left - g.node_weight[u] : left + g.node_weight[u];
                if (!too_heavy && !too_light && std::llabs(after - target) > wander) continue;
                if (from < 0 || heap[s].top().first > heap[from].top().first) from = s;
            }
            if (from < 0) break;
            const int32_t u = heap[from].top().second;
            heap[from].pop();
            locked[u] = 1;
            cut -= gain[u];
            side[u] = static_cast<uint8_t>(1 - from);
            left += from == 0 ? -g.node_weight[u] : g.node_weight[u];
            gain[u] = -gain[u];
            for (int64_t e = g.ptr[u]; e < g.ptr[u + 1]; ++e) {
                const int32_t v = g.adj[e];
                gain[v] += side[v] == side[u] ? -2 * g.edge_weight[e] : 2 * g.edge_weight[e];
                if (!locked[v]) heap[side[v]].push({gain[v], v});
            }
            moved.push_back(u);
            const int64_t now_imbalance = imbalance(left);
            if (now_imbalance < best_imbalance || (now_imbalance == best_imbalance && cut < best_cut)) {
                best_imbalance = now_imbalance;
                best_cut = cut;
                best_moves = moved.size();
            } else if (static_cast<int64_t>(moved.size() - best_moves) > stall_limit) {
                break;
            }
        }
        for (size_t k = moved.size(); k > best_moves; --k) {  // undo the moves after the best prefix
            const int32_t u = moved[k - 1];
            left += side[u] == 0 ? -g.node_weight[u] : g.node_weight[u];
            side[u] = static_cast<uint8_t>(1 - side[u]);
        }
        cut = best_cut;
        if (best_imbalance == start_imbalance && best_cut >= start_cut) break;
    }
    return cut;
}

// Greedy graph growing: side 0 grows from `seed` by the frontier node with the best gain until it
// holds `target` weight (a new seed when the piece runs out).
std::vector<uint8_t> grow(const Graph& g, int32_t seed, int64_t target, std::mt19937_64& rng) {
    const int64_t n = g.size();
    std::vector<uint8_t> side(n, 1);
    std::vector<int64_t> gain(n, 0);
    std::priority_queue<std::pair<int64_t, int32_t>> frontier;
    int64_t left = 0;
    std::vector<int32_t> fallback(n);
    std::iota(fallback.begin(), fallback.end(), 0);
    std::shuffle(fallback.begin(), fallback.end(), rng);
    size_t next_fallback = 0;
    for (int64_t u = 0; u < n; ++u)
        for (int64_t e = g.ptr[u]; e < g.ptr[u + 1]; ++e) gain[u] -= g.edge_weight[e];
    frontier.push({gain[seed], seed});
    while (left < target) {
        int32_t u = -1;
        while (!frontier.empty()) {
            const auto [gv, v] = frontier.top();
            frontier.pop();
            if (side[v] == 1 && gv == gain[v]) { u = v; break; }
        }
        if (u < 0) {
            while (next_fallback < fallback.size() && side[fallback[next_fallback]] == 0) ++next_fallback;
            if (next_fallback == fallback.size()) break;
            u = fallback[next_fallback];
        }
        if (left + g.node_weight[u] > target && left > 0 &&
            left + g.node_weight[u] - target > target - left) break;  // overshooting more than stopping
        side[u] = 0;
        left += g.node_weight[u];
        for (int64_t e = g.ptr[u]; e < g.ptr[u + 1]; ++e) {
            const int32_t v = g.adj[e];
            if (side[v] == 1) {
                gain[v] += 2 * g.edge_weight[e];
                frontier.push({gain[v], v});
            }
        }
    }
    return side;
}

// Exact-size bisection of g (unit node weights): side 0 gets exactly `target` nodes.
std::vector<uint8_t> bisect(const Graph& fine, int64_t target, std::mt19937_64& rng) {
    constexpr int64_t kCoarsest = 96;
    constexpr int kSeeds = 4, kPasses = 4;
    std::vector<Graph> levels;
    std::vector<std::vector<int32_t>> maps;
    const Graph* g = &fine;
    const int64_t total = fine.total_weight();
    // Coarse nodes stay well under the smaller side, so the coarse bisection can be balanced.
    const int64_t max_node_weight = std::max<int64_t>(1, std::min(target, total - target) / 8);
    while (g->size() > kCoarsest) {
        std::vector<int32_t> coarse_of;
        Graph c = coarsen(*g, coarse_of, rng, max_node_weight);
        if (c.size() > g->size() * 9 / 10) break;  // matching stalls (isolated nodes, stars)
        maps.push_back(std::move(coarse_of));
        levels.push_back(std::move(c));
        g = &levels.back();
    }
    auto tolerance = [&](const Graph& level) {
        return static_cast<int64_t>(*std::max_element(level.node_weight.begin(), level.node_weight.end()));
    };
    std::vector<uint8_t> side;
    int64_t best_cut = -1, best_imbalance = 0;
    const bool exact = levels.empty();
    const int64_t accept = exact ? 0 : tolerance(*g);
    std::uniform_int_distribution<int64_t> pick(0, g->size() - 1);
    for (int s = 0; s < kSeeds; ++s) {
        std::vector<uint8_t> trial = grow(*g, static_cast<int32_t>(pick(rng)), target, rng);
        const int64_t cut = refine(*g, trial, target, accept, accept + 4, kPasses);
        int64_t left = 0;
        for (int64_t u = 0; u < g->size(); ++u) left += trial[u] == 0 ? g->node_weight[u] : 0;
        const int64_t imbalance = std::max<int64_t>(0, std::llabs(left - target) - accept);
        if (best_cut < 0 || imbalance < best_imbalance || (imbalance == best_imbalance && cut < best_cut)) {
            best_cut = cut;
            best_imbalance = imbalance;
            side = std::move(trial);
        }
    }
    for (int64_t level = static_cast<int64_t>(levels.size()) - 1; level >= 0; --level) {
        const Graph& finer = level == 0 ? fine : levels[level - 1];
        std::vector<uint8_t> projected(finer.size());
        for (int64_t u = 0; u < finer.size(); ++u) projected[u] = side[maps[level][u]];
        side = std::move(projected);
        const int64_t finer_accept = level == 0 ? 0 : tolerance(finer);
        refine(finer, side, target, finer_accept, finer_accept + 4, kPasses);
    }
    // Exact size at the finest level: move the best-gain nodes off the heavy side if FM could not.
    int64_t left = 0;
    for (int64_t u = 0; u < fine.size(); ++u) left += side[u] == 0;
    if (left != target) {
        const int heavy = left > target ? 0 : 1;
        std::vector<std::pair<int64_t, int32_t>> candidates;
        for (int64_t u = 0; u < fine.size(); ++u) {
            if (side[u] != heavy) continue;
            int64_t g_u = 0;
            for (int64_t e = fine.ptr[u]; e < fine.ptr[u + 1]; ++e) g_u += side[fine.adj[e]] != side[u] ? 1 : -1;
            candidates.push_back({-g_u, static_cast<int32_t>(u)});
        }
        std::sort(candidates.begin(), candidates.end());
        for (int64_t k = 0; k < std::llabs(left - target); ++k) side[candidates[k].second] = static_cast<uint8_t>(1 - heavy);
        refine(fine, side, target, 0, 4, 2);
    }
    return side;
}

// The cut position strictly inside (lo, hi) nearest the middle on the global block grid, or -1.
int64_t aligned_cut(int64_t lo, int64_t hi, int64_t offset, int64_t block_size) {
    int64_t first = lo + (block_size - (offset + lo) % block_size) % block_size;
    if (first == lo) first += block_size;
    if (first >= hi) return -1;
    const int64_t last = first + ((hi - 1 - first) / block_size) * block_size;
    const int64_t middle = (lo + hi) / 2;
    const int64_t steps = std::max<int64_t>((middle - first + block_size / 2) / block_size, 0);
    return std::min(first + steps * block_size, last);
}

class RecursiveBisection {
public:
    RecursiveBisection(const int64_t* ptr, const int64_t* nbrs, int64_t n, int64_t block_size, int64_t offset,
                       uint64_t seed, int spawn_depth)
        : ptr_(ptr), nbrs_(nbrs), n_(n), block_size_(block_size), offset_(offset), seed_(seed),
          spawn_depth_(spawn_depth), local_(n, -1) {}

    // Orders `nodes` into out[lo:hi]. The two halves of the first `spawn_depth` levels run on
    // threads of their own; every split seeds its generator from (seed, lo), so the order does
    // not depend on the number of threads.
    void split(std::vector<int32_t>& nodes, int64_t lo, int64_t hi, int64_t* out, int depth = 0) {
        const int64_t cut = aligned_cut(lo, hi, offset_, block_size_);
        if (cut < 0) {
            std::copy(nodes.begin(), nodes.end(), out + lo);
            return;
        }
        std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(lo) * 0xBF58476D1CE4E5B9ULL + 1);
        const std::vector<uint8_t> side = bisect(induced(nodes), cut - lo, rng);
        std::vector<int32_t> left, right;
        left.reserve(cut - lo);
        right.reserve(hi - cut);
        for (size_t k = 0; k < nodes.size(); ++k) (side[k] == 0 ? left : right).push_back(nodes[k]);
        std::vector<int32_t>().swap(nodes);  // free this level before recursing
        if (depth < spawn_depth_) {
            std::exception_ptr failure;  // an exception must not escape a thread (std::terminate)
            std::thread helper([&, depth] {
                try {
                    RecursiveBisection(ptr_, nbrs_, n_, block_size_, offset_, seed_, spawn_depth_)
                        .split(left, lo, cut, out, depth + 1);
                } catch (...) {
                    failure = std::current_exception();
                }
            });
            try {
                split(right, cut, hi, out, depth + 1);
            } catch (...) {
                helper.join();
                throw;
            }
            helper.join();
            if (failure) std::rethrow_exception(failure);
        } else {
            split(left, lo, cut, out, depth + 1);
            split(right, cut, hi, out, depth + 1);
        }
    }

private:
    const int64_t* ptr_;
    const int64_t* nbrs_;
    int64_t n_, block_size_, offset_;
    uint64_t seed_;
    int spawn_depth_;
    std::vector<int32_t> local_;

    Graph induced(const std::vector<int32_t>& nodes) {
        Graph g;
        const int64_t n = static_cast<int64_t>(nodes.size());
        for (int64_t k = 0; k < n; ++k) local_[nodes[k]] = static_cast<int32_t>(k);
        g.node_weight.assign(n, 1);
        g.ptr.assign(n + 1, 0);
        for (int64_t k = 0; k < n; ++k) {
            const int32_t u = nodes[k];
            for (int64_t e = ptr_[u]; e < ptr_[u + 1]; ++e) {
                const int32_t v = local_[nbrs_[e]];
                if (v >= 0) {
                    g.adj.push_back(v);
                    g.edge_weight.push_back(1);
                }
            }
            g.ptr[k + 1] = static_cast<int64_t>(g.adj.size());
        }
        for (int64_t k = 0; k < n; ++k) local_[nodes[k]] = -1;
        return g;
    }
};

}  // namespace

std::vector<int64_t> multilevel_order(const int64_t* ptr, const int64_t* nbrs, int64_t num_nodes, int64_t block_size,
                                      int64_t offset, uint64_t seed) {
    std::vector<int64_t> out(num_nodes);
    std::vector<int32_t> nodes(num_nodes);
    std::iota(nodes.begin(), nodes.end(), 0);
    // Threads only pay on graphs large enough to amortise them.
    const unsigned threads = num_nodes >= 20000 ? std::max(1u, std::thread::hardware_concurrency()) : 1u;
    int spawn_depth = 0;
    while ((1u << spawn_depth) < threads && spawn_depth < 4) ++spawn_depth;
    RecursiveBisection(ptr, nbrs, num_nodes, block_size, offset, seed, spawn_depth).split(nodes, 0, num_nodes, out.data());
    return out;
}

}  // namespace graphattn
